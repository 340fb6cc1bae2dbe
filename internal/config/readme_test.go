package config

import (
	"os"
	"strings"
	"testing"
)

// The README's flags table lists every option with its variable and its
// default, and nothing else: it is written by hand, so this holds it to
// the options table.
func TestReadmeTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "| Flag | Variable | Default | Meaning |\n")
	if !ok {
		t.Fatal("README has no flags table")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	rows := map[string][]string{} // long flag → cells
	for _, line := range strings.Split(table, "\n")[1:] {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) < 4 {
			t.Errorf("README flags table: odd row %q", line)
			continue
		}
		for _, f := range strings.FieldsFunc(cells[0], func(r rune) bool { return r == ',' || r == ';' }) {
			f = strings.Trim(strings.TrimSpace(f), "`")
			if strings.HasPrefix(f, "--") {
				rows[strings.TrimPrefix(f, "--")] = cells
			}
		}
	}
	for _, o := range options {
		cells, ok := rows[o.long]
		if !ok {
			t.Errorf("README's flags table has no row for --%s", o.long)
			continue
		}
		delete(rows, o.long)
		if o.scope == actionScope {
			continue
		}
		if cells[1] != "`"+o.env()+"`" {
			t.Errorf("--%s: README says variable %s, want `%s`", o.long, cells[1], o.env())
		}
		def := "none"
		if o.def != "" {
			def = "`" + o.def + "`"
		}
		if !strings.HasPrefix(cells[2], def) {
			t.Errorf("--%s: README says default %s, want %s", o.long, cells[2], def)
		}
		if o.short != "" && !strings.Contains(cells[0], "`-"+o.short+"`") {
			t.Errorf("--%s: README lacks -%s", o.long, o.short)
		}
	}
	for long := range rows {
		t.Errorf("README's flags table lists --%s, which is no option", long)
	}
}

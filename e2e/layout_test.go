package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeLayoutMatchesTree: every package directory under internal/
// has its row in the README's Layout table, and every row names a
// path that exists — so that the table stays the map of the tree.
func TestReadmeLayoutMatchesTree(t *testing.T) {
	src := readmeText(t)
	start := strings.Index(src, "\n## Layout\n")
	if start < 0 {
		t.Fatal("README has no ## Layout section")
	}
	section := src[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	root := repoPath(t, ".")
	rows := map[string]bool{}
	for _, l := range strings.Split(section, "\n") {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		path := strings.TrimSuffix(strings.SplitN(l[3:], "`", 2)[0], "/")
		rows[path] = true
		if _, err := os.Stat(filepath.Join(root, path)); err != nil {
			t.Errorf("the Layout table names %s, which is not in the tree", path)
		}
	}
	ents, err := os.ReadDir(filepath.Join(root, "internal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		dir := filepath.Join("internal", e.Name())
		if e.IsDir() && hasGoFiles(t, filepath.Join(root, dir)) && !rows[dir] {
			t.Errorf("package %s has no row in the README's Layout table", dir)
		}
	}
	if len(rows) < 10 {
		t.Fatalf("only %d rows read from the Layout table: %v", len(rows), rows)
	}
}

func hasGoFiles(t *testing.T, dir string) bool {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m) > 0
}

package config

import (
	"fmt"
	"strings"

	"github.com/gm2-init/gm2-init/internal/echo"
)

// scan splits args into the flags given (by option, in order) and the
// command. It follows Go's flag syntax — -x and --x mean the same, a value
// follows as the next argument or after '=', the first argument that is not
// a flag starts the command, and "--" ends the flags — with three rules of
// its own, each closing a way a typo used to pass unnoticed:
//
//   - an option given twice is refused (-i 2 --instances 3 would otherwise
//     silently keep the last), except the repeatable --listen;
//   - a switch takes its value only after '=': --wait-ready=false. A switch
//     followed by a word it would accept as a value (--wait-ready false) is
//     refused, because Go's flag parser would read "false" as the command
//     and run /bin/false with the rest of the line as its arguments;
//   - every message quotes what was typed, on one line, cut short.
func scan(args []string) (given map[*option][]string, command []string, err error) {
	given = map[*option][]string{}
	raw := map[*option][]string{} // as typed, for the duplicate message
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return given, args[i+1:], nil
		}
		if len(a) < 2 || a[0] != '-' {
			return given, args[i:], nil // the command
		}
		name := strings.TrimPrefix(a[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			return nil, nil, &UsageError{Msg: fmt.Sprintf("bad flag syntax %s (see gm2-init -h; put the command after --)", echo.Quote(a))}
		}
		name, value, hasValue := strings.Cut(name, "=")
		o := lookup(name)
		if o == nil {
			return nil, nil, unknownFlag(a, name)
		}
		switch {
		case o.kind == switchKind && !hasValue:
			value = "true"
			if i+1 < len(args) && isBoolWord(args[i+1]) {
				next := args[i+1]
				return nil, nil, &UsageError{Msg: fmt.Sprintf("%s %s: a switch takes its value after '=' (--%s=%s); a command named %s goes after --",
					a, echo.Quote(next), o.long, strings.ToLower(next), echo.Quote(next))}
			}
		case o.kind != switchKind && !hasValue:
			if i+1 >= len(args) {
				return nil, nil, &UsageError{Msg: fmt.Sprintf("flag %s needs a value (see gm2-init -h)", dashed(name))}
			}
			i++
			value = args[i]
		}
		if len(given[o]) > 0 && o.kind != listKind {
			return nil, nil, &UsageError{Msg: fmt.Sprintf("%s given twice (%s then %s); give it once (only --listen repeats)",
				o.spelling(), raw[o][0], echo.Quote(flagText(a, value, hasValue)))}
		}
		given[o] = append(given[o], value)
		raw[o] = append(raw[o], echo.Quote(flagText(a, value, hasValue)))
	}
	return given, nil, nil
}

// flagKey is the long name a flag was likely meant as: PM2's spellings
// (max_memory_restart) and capitals read as gm2-init's.
func flagKey(name string) string { return strings.ToLower(strings.ReplaceAll(name, "_", "-")) }

// unknownFlag is the message for a flag no option has: typed a (as
// written, up to '=') and named name. It suggests the option most likely
// meant, by the rule unknown GM2_* variables are suggested with (suggest),
// after PM2's spelling with underscores (--max_memory_restart) is turned
// into gm2-init's; and for a short flag glued to its value (-i3, which Go's
// flag syntax reads as a flag named i3), the two ways to write it.
func unknownFlag(a, name string) error {
	typed, _, _ := strings.Cut(a, "=")
	msg := "unknown flag " + plain(typed)
	const hint = " (see gm2-init -h; put the command after --)"
	want := flagKey(name)
	long := ""
	if o := lookup(want); o != nil && len(want) > 1 {
		long = o.long
	} else if len(want) > 2 {
		longs := make([]string, len(options))
		for i, o := range options {
			longs[i] = o.long
		}
		long = suggest(want, longs)
	}
	if long != "" {
		return &UsageError{Msg: msg + "; did you mean --" + long + "?" + hint}
	}
	if o := lookup(name[:1]); o != nil && o.short != "" && len(name) > 1 && o.kind != switchKind {
		f, v := "-"+o.short, plain(name[1:])
		return &UsageError{Msg: msg + ": a value goes after a blank or '=': " + f + " " + v + " or " + f + "=" + v + hint}
	}
	return &UsageError{Msg: msg + hint}
}

// flagText gives back a flag the way it was typed, for messages.
func flagText(a, value string, hasValue bool) string {
	if hasValue {
		return a
	}
	return a + " " + value
}

// isBoolWord tells the words a switch would take as its value.
func isBoolWord(s string) bool {
	_, err := parseBool(s)
	return err == nil && s != ""
}

// dashed spells a flag name the way the help does: -i, --instances.
func dashed(name string) string {
	if len(name) == 1 {
		return plain("-" + name)
	}
	return plain("--" + name)
}

// plain shows a name from the user (a flag, a variable) as is when it is
// short, printable text, and quoted and cut short otherwise.
func plain(s string) string {
	if q := echo.Quote(s); q[1:len(q)-1] != s {
		return q
	}
	return s
}

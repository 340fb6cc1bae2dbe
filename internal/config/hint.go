package config

import (
	"fmt"
	"strings"

	"github.com/gm2-init/gm2-init/internal/echo"
)

// flagAsCommand explains a command that starts with '-' and was not found:
// a flag given after -- (`docker run IMAGE -i 4` where the image's
// ENTRYPOINT is ["gm2-init", "-i", "max", "--"]: CMD, replaced by -i 4,
// comes after --). It says that flags go before --, and how to give this
// one there: its GM2_* variable, or — when the flag is given before --
// already, which wins over the variable — where that is.
func (c *Config) flagAsCommand(command []string) string {
	word := command[0]
	name, value, hasValue := strings.Cut(strings.TrimLeft(word, "-"), "=")
	o := lookup(flagKey(name))
	if o == nil {
		return fmt.Sprintf("command %s: not found; everything after -- is the command, and gm2-init's flags go before -- "+
			"(see gm2-init -h; in an image whose ENTRYPOINT ends with --, give them as GM2_* variables)", echo.Quote(word))
	}
	shown := dashed(name)
	if name != flagKey(name) {
		shown = "--" + o.long // PM2's max_memory_restart
	}
	head := fmt.Sprintf("command %s: not found; everything after -- is the command, and %s is a gm2-init flag: give it before --", echo.Quote(word), shown)
	env := o.env()
	if env == "" {
		return head
	}
	// The source of an option with a default is its spelling only when
	// the flag was given (see parse); one with no default has that source
	// when nothing set it either, and then gets the general advice.
	if src := c.sources[o.long]; src == o.spelling() && o.def != "" {
		return fmt.Sprintf("%s, where %s is given already, and wins over %s: change it there (in an image, its ENTRYPOINT: docker run --entrypoint)",
			head, o.spelling(), env)
	}
	switch {
	case hasValue:
	case o.kind == switchKind:
		value = "true"
	case len(command) > 1:
		value = command[1]
	default:
		value = o.arg
	}
	return fmt.Sprintf("%s, or as %s=%s (in an image whose ENTRYPOINT ends with --: docker run -e %s=%s)", head, env, plain(value), env, plain(value))
}

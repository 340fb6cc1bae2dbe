package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/echo"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// parseInt accepts a whole number from lo to hi.
func parseInt(v string, lo, hi int, accepted string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		return 0, errors.New(accepted)
	}
	return n, nil
}

// parseBool accepts the usual spellings of a switch's value.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "yes", "on":
		return true, nil
	case "0", "f", "false", "no", "off":
		return false, nil
	}
	return false, errors.New("accepted: true or false")
}

// setDuration parses a duration of at least lo (and at most
// appspec.MaxDuration) into dst.
func setDuration(dst *time.Duration, v string, lo time.Duration) error {
	d, err := appspec.ParseDuration(v)
	if err != nil {
		return err
	}
	if err := appspec.CheckDuration(d, lo); err != nil {
		return err
	}
	*dst = d
	return nil
}

// oneOf accepts one of the words, in any case.
func oneOf(v string, words ...string) (string, error) {
	w := strings.ToLower(strings.TrimSpace(v))
	for _, ok := range words {
		if w == ok {
			return w, nil
		}
	}
	return "", errors.New("accepted: " + orList(words))
}

func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func minReadyString(n int) string {
	if n == 0 {
		return "all"
	}
	return strconv.Itoa(n)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// setListen adds the addresses of one --listen value (or of GM2_LISTEN),
// read by appspec.ParseListen as a process file's listen key is: a
// comma-separated list whose blank items are skipped (a trailing comma in a
// multi-line variable) but which must hold at least one address: an empty
// --listen value or GM2_LISTEN=, is a mistake (a variable that is empty as a
// whole is no listener, as an unset one).
func setListen(c *Config, v string) error {
	specs, err := appspec.ParseListen(v)
	var none *appspec.NoListenAddressError
	switch {
	case errors.As(err, &none):
		return err
	case err != nil:
		return &detailed{err} // it names the address
	}
	c.App.Listen = append(c.App.Listen, specs...)
	return nil
}

func listenJSON(specs []sockets.Spec) []map[string]string {
	out := make([]map[string]string, 0, len(specs))
	for _, l := range specs {
		out = append(out, map[string]string{"name": l.Name, "network": string(l.Network), "address": l.Addr, "spec": l.String()})
	}
	return out
}

// parseHealthAddr reads --health-addr as `gm2-init healthcheck` reads
// GM2_HEALTH_ADDR: off is off (""), a bare port is every interface (as
// --listen 9000), an empty value is refused.
func parseHealthAddr(v string) (string, error) { return sockets.ParseHealthAddr(v) }

// checkFile accepts the path of a readable regular file: the process file
// is read later, and a typo in its name should fail here, in one line.
func checkFile(v string) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", errors.New("accepted: the path of a PM2 process file (ecosystem file)")
	}
	f, err := os.Open(v)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return "", errors.New("no such file")
		case errors.Is(err, os.ErrPermission):
			return "", errors.New("not readable by this user")
		}
		return "", errors.New(echo.Line(err.Error()))
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return "", errors.New("not a regular file; accepted: the path of a PM2 process file")
	}
	return v, nil
}

// parseNames reads --only: comma-separated app names, each as a process
// file may name an app (appspec.CheckName).
func parseNames(v string) ([]string, error) {
	accepted := "accepted: app names separated by commas (" + appspec.NameAccepted + ")"
	var out []string
	for _, part := range strings.Split(v, ",") {
		name := strings.TrimSpace(part)
		if name == "" {
			continue
		}
		if appspec.CheckName(name) != nil {
			return nil, errors.New(accepted)
		}
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, errors.New(accepted)
	}
	return out, nil
}

// parseEnvName reads --env: the NAME of env_NAME blocks.
func parseEnvName(v string) (string, error) {
	name := strings.TrimSpace(v)
	if !validEnvName(name) {
		return "", errors.New("accepted: the NAME of the process file's env_NAME blocks (letters, digits, '-' and '_'), such as production")
	}
	return name, nil
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, r := range s {
		ok := r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// setCommand takes the command after the flags: required unless --config
// names a process file.
func (c *Config) setCommand(command []string) error {
	if len(command) == 0 {
		if c.ConfigFile != "" {
			return nil
		}
		return &UsageError{Msg: "missing command: usage is gm2-init [flags] -- COMMAND [ARGS...] or gm2-init --config FILE (see gm2-init -h)"}
	}
	path, err := exec.LookPath(command[0])
	if err != nil && strings.HasPrefix(command[0], "-") && errors.Is(err, exec.ErrNotFound) {
		return &UsageError{Msg: c.flagAsCommand(command)}
	}
	if err != nil {
		return &UsageError{Msg: fmt.Sprintf("command %s: %s", echo.Quote(command[0]), lookPathReason(command[0], err))}
	}
	c.App.Command = command
	c.App.Path = path
	c.App.Name = appspec.NameFromCommand(command)
	return nil
}

func lookPathReason(name string, err error) string {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		// LookPath skips the files it cannot execute: say so when that is
		// why nothing was found.
		if !strings.Contains(name, "/") {
			for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
				if dir == "" {
					continue
				}
				p := filepath.Join(dir, name)
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					return fmt.Sprintf("found as %s in PATH, but it is not executable (chmod +x, or run it through its interpreter)", echo.Quote(p))
				}
			}
		}
		return "not found in PATH (give a path or install it in the image)"
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES):
		return "is not executable (chmod +x, or run it through its interpreter)"
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return "no such file"
	}
	// The wrapping errors repeat the name, which the message already
	// shows (cut short): keep only the cause.
	var pe *fs.PathError
	var ee *exec.Error
	switch {
	case errors.As(err, &pe):
		return pe.Err.Error()
	case errors.As(err, &ee):
		return ee.Err.Error()
	}
	return err.Error()
}

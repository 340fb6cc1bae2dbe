package preload

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// EnvFile names the --require file of a worker's preload (ModeRequire). The
// worker's exec shim consumes it: RestoreFile.
const EnvFile = "GM2_PRELOAD_FILE"

// RestoreFile returns env for the app's execve, without EnvFile, after
// making sure that the file EnvFile names still exists. A node whose
// --require file is gone exits at once ("Cannot find module"), so without
// this every restart, reload and scale-up after the file was removed would
// crash-loop: a tmp cleaner, systemd-logind's RemoveIPC (which empties a
// user's /dev/shm when the last session ends), or a person tidying up.
//
// A missing file is written again, in its own directory, only when that
// directory is gm2-init's (created now, or owned by this uid and writable
// by nobody else) and its parent is safe (see safeParent): a predictable
// path in a shared directory must not let another user's file become
// every worker's preload. When the file cannot be restored, NODE_OPTIONS
// loses its --require, so that the worker starts without the preload
// rather than not at all, and why goes to stderr (gm2-init's log stream).
func RestoreFile(env []string) []string {
	path := ""
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, EnvFile+"="); ok {
			path = v
			continue
		}
		out = append(out, kv)
	}
	if path == "" {
		return env
	}
	err := restore(path)
	if err == nil {
		return out
	}
	fmt.Fprintf(os.Stderr, "gm2-init: preload file %s is gone and cannot be written again (%v): this worker starts without the preload\n", path, err)
	opt, oerr := RequireOption(path)
	if oerr != nil {
		return out
	}
	for i, kv := range out {
		if v, ok := strings.CutPrefix(kv, envNodeOptions); ok {
			out[i] = envNodeOptions + removeOption(v, opt)
		}
	}
	return out
}

// restore writes the preload file at path again if it is gone.
func restore(path string) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && ownedByMe(fi) {
		return nil
	}
	dir := filepath.Dir(path)
	if err := safeParent(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() || !ownedByMe(fi) || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is not a directory of gm2-init's own (owner, mode %v)", dir, fi.Mode())
	}
	if err := writeReadOnly(path, preloadSource); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Another worker's shim may have written it meanwhile: the directory
	// is ours alone, so whatever is there now is too, once it is a file.
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return os.Chmod(dir, 0o755)
}

// safeParent refuses a parent directory that other users may write to
// without the sticky bit: there they could rename gm2-init's directory and
// put a file of theirs in its place. /tmp and /dev/shm are sticky.
// A parent that cannot be read is left to the mkdir that follows, which
// says why.
func safeParent(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil
	}
	if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("%s is writable by every user and not sticky", dir)
	}
	return nil
}

func ownedByMe(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

package procfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxFileSize bounds what is read from a process file, and from node's
// answer for a .js one: a real ecosystem file is a few kB.
const maxFileSize = 4 << 20

// format is how a process file is read, decided by its extension as PM2
// does (ecosystem.config.js, processes.json, ecosystem.yaml).
type format int

const (
	formatJSON format = iota
	formatYAML
	formatJS
)

const acceptedExts = ".json, .yaml, .yml, .js, .cjs or .mjs"

func formatOf(path string) (format, bool) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return formatJSON, true
	case ".yaml", ".yml":
		return formatYAML, true
	case ".js", ".cjs", ".mjs":
		return formatJS, true
	}
	return 0, false
}

// readFile reads at most maxFileSize bytes of a process file.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, errors.New("is a directory, not a process file")
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d MiB; a process file is a few kB", maxFileSize>>20)
	}
	return b, nil
}

// The decoded tree holds only these types: map[string]any, []any, string,
// json.Number, bool and nil, whatever the file's format, so that one set of
// key readers serves JSON, YAML and JavaScript.

// decodeJSON reads one JSON value. PM2 evaluates a .json process file as a
// JavaScript expression, so files in the wild carry comments and trailing
// commas: those two are accepted (blanked before decoding, which keeps line
// and column numbers right); anything else that is not JSON is refused with
// its line and column.
func decodeJSON(b []byte) (any, error) {
	clean := relaxJSON(b)
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(clean, err)
	}
	off := dec.InputOffset()
	for off < int64(len(clean)) && isJSONSpace(clean[off]) {
		off++
	}
	if off < int64(len(clean)) {
		line, col := position(clean, off+1)
		return nil, fmt.Errorf("line %d, column %d: unexpected data after the top-level value", line, col)
	}
	return v, nil
}

func jsonError(b []byte, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		line, col := position(b, se.Offset)
		return fmt.Errorf("line %d, column %d: %s", line, col, se.Error())
	case errors.Is(err, io.EOF):
		return errors.New("empty file (expected an object with apps: [...])")
	case errors.Is(err, io.ErrUnexpectedEOF):
		// Just past the last byte.
		line := 1 + bytes.Count(b, []byte("\n"))
		col := len(b) - bytes.LastIndexByte(b, '\n')
		return fmt.Errorf("line %d, column %d: unexpected end of file", line, col)
	}
	return err
}

// position turns a byte offset into a 1-based line and column. The
// encoding/json offset is the byte after the one that failed.
func position(b []byte, off int64) (line, col int) {
	off = min(max(off, 1), int64(len(b)))
	line = 1 + bytes.Count(b[:off-1], []byte("\n"))
	col = int(off) - bytes.LastIndexByte(b[:off-1], '\n') - 1
	if len(b) == 0 {
		return 1, 1
	}
	return line, max(col, 1)
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// relaxJSON returns a copy of b with // and /* */ comments and trailing
// commas (a ',' before '}' or ']') replaced by spaces; strings are left
// alone. Newlines stay, so positions in the copy are positions in b.
func relaxJSON(b []byte) []byte {
	out := bytes.Clone(b)
	const (
		code = iota
		str
		line
		block
	)
	state := code
	for i := 0; i < len(out); i++ {
		c := out[i]
		switch state {
		case str:
			if c == '\\' {
				i++
			} else if c == '"' {
				state = code
			}
		case line:
			if c == '\n' {
				state = code
			} else {
				out[i] = ' '
			}
		case block:
			if c == '*' && i+1 < len(out) && out[i+1] == '/' {
				out[i], out[i+1] = ' ', ' '
				i++
				state = code
			} else if c != '\n' {
				out[i] = ' '
			}
		default:
			switch {
			case c == '"':
				state = str
			case c == '/' && i+1 < len(out) && out[i+1] == '/':
				out[i], out[i+1] = ' ', ' '
				i++
				state = line
			case c == '/' && i+1 < len(out) && out[i+1] == '*':
				out[i], out[i+1] = ' ', ' '
				i++
				state = block
			}
		}
	}
	// Trailing commas, now that comments are blanks.
	state = code
	for i := 0; i < len(out); i++ {
		c := out[i]
		if state == str {
			if c == '\\' {
				i++
			} else if c == '"' {
				state = code
			}
			continue
		}
		switch c {
		case '"':
			state = str
		case ',':
			j := i + 1
			for j < len(out) && isJSONSpace(out[j]) {
				j++
			}
			if j < len(out) && (out[j] == '}' || out[j] == ']') {
				out[i] = ' '
			}
		}
	}
	return out
}

// decodeYAML reads the first document of a YAML file, as gm2-init did
// with the YAML library; the others are read for their errors only.
func decodeYAML(b []byte) (v any, err error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty file (expected a mapping with apps: [...])")
	}
	return parseYAML(string(b))
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}

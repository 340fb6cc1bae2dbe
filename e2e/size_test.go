package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxBinaryBytes is the size budget of the stripped static binary built
// without inlining (CGO_ENABLED=0, -trimpath -ldflags='-s -w'
// -gcflags=all=-l), the form Dockerfile.example and the README install:
// under round 1's 4,210,850 bytes, as issue 13 asks. gm2-init is copied
// into every image, and most of it is resident in every container: a
// change that passes the budget must say why in the README's design notes
// and raise it there and here together.
const maxBinaryBytes = 4_210_000

// forbiddenDeps must never be linked in: net/http alone brings crypto/tls,
// crypto/x509, the FIPS 140 module and HTTP/2, about 3 MB, for what the
// health endpoints do with a strict HTTP/1.x subset of their own. The YAML
// library (250 kB) is the oracle of procfile's fuzz test, never a part of
// gm2-init: process files are read by procfile's own YAML reader.
// regexp and text/template (with their tables, 344 kB) come with
// envconfig after v1.2.0 (split_words reads names with a regular
// expression; Usage imports text/template): go.mod pins v1.2.0 (README,
// design notes).
var forbiddenDeps = []string{"net/http", "crypto/tls", "crypto/x509", "crypto/rand", "crypto/internal/fips140", "go.yaml.in/yaml", "regexp", "text/template"}

// forbiddenSymbols must not be linked either. net's name resolver (its
// Resolver, the DNS client, /etc/hosts and nsswitch.conf parsing: about
// 190 kB) comes with any net.Dial, net.Listen or net.ListenPacket of a
// string address, and gm2-init never looks a name up: config takes IP
// addresses and localhost only (sockets.StdlibTCPAddr, sockets.DialTCP).
// The names are Go's internals (Go 1.26): a toolchain that renames them
// makes this check pass without checking; the size budget still holds.
var forbiddenSymbols = []string{"net.(*Resolver).", "net.(*conf).", "net.dnsReadConfig"}

func TestBinarySizeBudget(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "..").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range forbiddenDeps {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("gm2-init links %s (forbidden: %s)", dep, bad)
			}
		}
	}
	bin := filepath.Join(t.TempDir(), "gm2-init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-gcflags=all=-l", "-o", bin, "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	checkSymbols(t, bin)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > maxBinaryBytes {
		t.Errorf("stripped static binary is %d bytes, over the budget of %d", st.Size(), maxBinaryBytes)
	}
	t.Logf("stripped static binary: %d bytes (budget %d)", st.Size(), maxBinaryBytes)
}

// checkSymbols links stripped's twin with its symbol table and fails on
// every forbiddenSymbols prefix go tool nm finds in it.
func checkSymbols(t *testing.T, stripped string) {
	t.Helper()
	bin := stripped + ".syms"
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	found := map[string]int{}
	lines := strings.Split(string(out), "\n")
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		for _, bad := range forbiddenSymbols {
			if strings.HasPrefix(f[len(f)-1], bad) {
				found[bad]++
			}
		}
	}
	for _, bad := range forbiddenSymbols {
		if found[bad] > 0 {
			t.Errorf("gm2-init links %d symbols %s… (net's name resolver: a net.Dial or net.Listen of a string address?)", found[bad], bad)
		}
	}
	if len(lines) < 1000 {
		t.Fatalf("go tool nm listed %d lines: not the symbol table of gm2-init", len(lines))
	}
}

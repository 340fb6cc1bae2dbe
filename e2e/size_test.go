package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxBinaryBytes is the size budget of the stripped static binary
// (CGO_ENABLED=0, -trimpath -ldflags='-s -w'), the form Dockerfile.example
// and the README install. gm2-init is copied into every image: a change
// that passes the budget must say why in the README's design notes and
// raise it there and here together.
const maxBinaryBytes = 5_100_000

// forbiddenDeps must never be linked in: net/http alone brings crypto/tls,
// crypto/x509, the FIPS 140 module and HTTP/2, about 3 MB, for what the
// health endpoints do with a strict HTTP/1.x subset of their own.
var forbiddenDeps = []string{"net/http", "crypto/tls", "crypto/x509", "crypto/rand", "crypto/internal/fips140"}

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
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > maxBinaryBytes {
		t.Errorf("stripped static binary is %d bytes, over the budget of %d", st.Size(), maxBinaryBytes)
	}
	t.Logf("stripped static binary: %d bytes (budget %d)", st.Size(), maxBinaryBytes)
}

// Package container tests gm2-init in a real container engine: podman, with
// runc, runs images built FROM scratch out of files of this machine (no
// registry is needed), and the tests drive them the way users do: `podman
// run --cpus`, `podman kill -s HUP`, `podman stop -t`, HEALTHCHECK through
// `podman healthcheck run`, `--read-only`, `--user`, `--init`.
//
// The unshare-based suite in e2e/ proves the kernel's half of being PID 1;
// this one proves the engine's half: how it delivers stop and HUP, the
// cgroup it gives --cpus, its HEALTHCHECK, its seccomp profile.
//
// Images are built once per run and shared by every test; each is removed at
// the end. Dockerfile.example's runtime stage is built from the file itself
// (see dockerfile_test.go). Where podman cannot start a container, every
// test skips with the reason, and fails with it under CI=true.
package container

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// suite is what TestMain sets up once for every test of the package.
var suite struct {
	root   string // the repository
	tmp    string // binaries and build contexts of this run
	prefix string // of every image and container name of this run

	podman string
	// engineErr says why podman cannot run containers here (not
	// installed, cannot start one): tests skip, or fail under CI=true.
	engineErr error
	// setupErr is a failure of the suite itself (a build that breaks):
	// every test fails with it.
	setupErr error

	// Binaries built for the images: static, as users ship them.
	gm2init, goapp, testworker string

	// setup builds the binaries and checks the engine on the first test
	// that needs them: the parser tests and fuzz workers never touch
	// podman.
	setup sync.Once

	imgMu  sync.Mutex
	images map[string]*imageBuild
}

type imageBuild struct {
	once sync.Once
	name string
	err  error
}

func TestMain(m *testing.M) {
	code := run(m)
	os.Exit(code)
}

func run(m *testing.M) int {
	var err error
	if suite.root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if suite.tmp, err = os.MkdirTemp("", "gm2-container-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(suite.tmp)
	var id [4]byte
	rand.Read(id[:])
	suite.prefix = "gm2-e2e-" + hex.EncodeToString(id[:])
	suite.images = map[string]*imageBuild{}

	code := m.Run()
	removeImages()
	return code
}

// buildBinaries builds gm2-init with the flags of Dockerfile.example's build
// stage, and the two test apps, as static binaries.
func buildBinaries() error {
	df, err := os.ReadFile(filepath.Join(suite.root, "Dockerfile.example"))
	if err != nil {
		return err
	}
	stages, err := parseDockerfile(string(df))
	if err != nil {
		return fmt.Errorf("Dockerfile.example: %w", err)
	}
	gb, err := goBuildOf(stages)
	if err != nil {
		return fmt.Errorf("Dockerfile.example: %w", err)
	}
	suite.gm2init = filepath.Join(suite.tmp, "bin", "gm2-init")
	suite.goapp = filepath.Join(suite.tmp, "bin", "goapp")
	suite.testworker = filepath.Join(suite.tmp, "bin", "testworker")
	builds := []struct {
		env  []string
		args []string
	}{
		{gb.env, append(append([]string(nil), gb.flags...), "-o", suite.gm2init, ".")},
		{[]string{"CGO_ENABLED=0"}, []string{"-trimpath", "-o", suite.goapp, "./examples/goapp"}},
		{[]string{"CGO_ENABLED=0"}, []string{"-trimpath", "-o", suite.testworker, "./e2e/testworker"}},
	}
	for _, b := range builds {
		cmd := exec.Command("go", append([]string{"build"}, b.args...)...)
		cmd.Dir = suite.root
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", strings.Join(b.args, " "), err, out)
		}
	}
	return nil
}

// checkEngine finds podman and proves that it can build an image and run a
// container of it; the image is the one most tests use.
func checkEngine() error {
	p, err := exec.LookPath("podman")
	if err != nil {
		return fmt.Errorf("podman is not on PATH (Debian packages podman runc catatonit): %w", err)
	}
	suite.podman = p
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("runc is not on PATH (Debian package runc): %w", err)
	}
	img, err := image("go", buildGoImage)
	if err != nil {
		return fmt.Errorf("podman cannot build an image here: %w", err)
	}
	args := append([]string{"run", "--rm"}, runLimits...)
	out, err := podmanOut(2*time.Minute, append(args, img, "--version")...)
	if err != nil {
		return fmt.Errorf("podman cannot start a container here: %w", err)
	}
	if !strings.HasPrefix(out, "gm2-init ") {
		return fmt.Errorf("podman ran gm2-init --version and got %q", out)
	}
	return nil
}

// needEngine ends the test when the suite cannot run: a failure of the
// suite's own build always, a missing or unusable engine through testtool
// (a skip, or a failure under CI=true).
func needEngine(t *testing.T) {
	t.Helper()
	suite.setup.Do(func() {
		suite.setupErr = buildBinaries()
		if suite.setupErr == nil {
			suite.engineErr = checkEngine()
		}
	})
	if suite.setupErr != nil {
		t.Fatalf("setting up the container suite: %v", suite.setupErr)
	}
	if suite.engineErr != nil {
		testtool.Missing(t, "%v", suite.engineErr)
	}
}

// image builds the image called key once per run with build (which gets the
// image's full name) and returns its name; later calls, from any test,
// share the result.
func image(key string, build func(name string) error) (string, error) {
	suite.imgMu.Lock()
	b, ok := suite.images[key]
	if !ok {
		b = &imageBuild{name: fmt.Sprintf("localhost/%s-%s:test", suite.prefix, key)}
		suite.images[key] = b
	}
	suite.imgMu.Unlock()
	b.once.Do(func() { b.err = build(b.name) })
	return b.name, b.err
}

// needImage is image for a test: an image that does not build fails it.
func needImage(t *testing.T, key string, build func(name string) error) string {
	t.Helper()
	needEngine(t)
	name, err := image(key, build)
	if err != nil {
		t.Fatalf("image %s: %v", key, err)
	}
	return name
}

func removeImages() {
	if suite.podman == "" {
		return
	}
	suite.imgMu.Lock()
	defer suite.imgMu.Unlock()
	for _, b := range suite.images {
		if b.err == nil {
			if out, err := podmanOut(2*time.Minute, "rmi", "-f", b.name); err != nil {
				fmt.Fprintf(os.Stderr, "removing image %s: %v\n%s", b.name, err, out)
			}
		}
	}
}

// podmanBuild builds Containerfile text containerfile in context dir as
// name. --layers=false keeps no intermediate image behind; --format docker
// keeps HEALTHCHECK (the OCI format drops it).
func podmanBuild(name, dir, containerfile string, extra ...string) error {
	f := filepath.Join(suite.tmp, strings.NewReplacer("/", "_", ":", "_").Replace(name)+".Containerfile")
	if err := os.WriteFile(f, []byte(containerfile), 0o644); err != nil {
		return err
	}
	args := append([]string{"build", "--format", "docker", "--layers=false", "-q", "-f", f, "-t", name}, extra...)
	_, err := podmanOut(5*time.Minute, append(args, dir)...)
	return err
}

// copyFile copies src to dst with mode, making dst's directory.
func copyFile(src, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// goImage is a scratch image with gm2-init and the two Go test apps, and
// nothing else: no shell, no libc, no curl.
const goImage = `FROM scratch
COPY gm2-init goapp testworker /usr/local/bin/
ENV PATH=/usr/local/bin
ENTRYPOINT ["gm2-init"]
`

func buildGoImage(name string) error {
	dir := filepath.Join(suite.tmp, "ctx-go")
	for _, b := range []string{suite.gm2init, suite.goapp, suite.testworker} {
		if err := copyFile(b, filepath.Join(dir, filepath.Base(b)), 0o755); err != nil {
			return err
		}
	}
	return podmanBuild(name, dir, goImage)
}

// nodeBaseImage stands in for the official node image, which no registry
// here can serve: the host's node binary and every shared library ldd lists
// for it, at the same paths, a `node` user with uid 1000 as in the official
// image, and a world-writable /tmp. It needs node on this machine.
func nodeBaseImage(t *testing.T) string {
	t.Helper()
	node := testtool.Require(t, "node", "Debian package nodejs")
	return needImage(t, "node-base", func(name string) error { return buildNodeBase(name, node) })
}

func buildNodeBase(name, node string) error {
	real, err := filepath.EvalSymlinks(node)
	if err != nil {
		return err
	}
	out, err := exec.Command("ldd", real).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", real, err)
	}
	files := []string{real}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	dir := filepath.Join(suite.tmp, "ctx-node-base")
	rootfs := filepath.Join(dir, "rootfs")
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		// A hard link where the file system allows it: 100 MB need not be
		// copied twice.
		dst := filepath.Join(rootfs, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		target, err := filepath.EvalSymlinks(f)
		if err != nil {
			return err
		}
		if os.Link(target, dst) != nil {
			if err := copyFile(target, dst, st.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	for path, content := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnode:x:1000:1000::/home/node:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nnode:x:1000:\n",
	} {
		if err := os.MkdirAll(filepath.Join(rootfs, filepath.Dir(path)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(rootfs, path), []byte(content), 0o644); err != nil {
			return err
		}
	}
	tmp := filepath.Join(rootfs, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o1777); err != nil {
		return err
	}
	const containerfile = `FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
`
	if err := podmanBuild(name, dir, containerfile); err != nil {
		return err
	}
	// The base must run node, or every Node test would fail for a reason
	// that is not gm2-init's.
	args := append([]string{"run", "--rm"}, runLimits...)
	v, err := podmanOut(2*time.Minute, append(args, name, "node", "--version")...)
	if err != nil || !strings.HasPrefix(v, "v") {
		return fmt.Errorf("node does not run in the base image built from %s: %q %v", real, v, err)
	}
	return nil
}

// writeFiles writes name → content under dir.
func writeFiles(dir string, files map[string][]byte) error {
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the directory src to dst (regular files, directories and
// symbolic links).
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case info.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		}
		return nil
	})
}

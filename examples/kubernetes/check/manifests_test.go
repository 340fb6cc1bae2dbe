package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// gm2init is the real binary, built once by TestMain from the repository.
var gm2init string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gm2-k8s-check-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gm2init = filepath.Join(dir, "gm2-init")
	cmd := exec.Command("go", "build", "-o", gm2init, ".")
	cmd.Dir = filepath.Join("..", "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build gm2-init: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// manifests is every object of examples/kubernetes, by kind.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
}

// splitDocuments splits a multi-document YAML file at its `---` lines.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(stripComments(cur.Bytes()))) > 0 {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// decodeStrict decodes one document into the API type its apiVersion and
// kind name. Unknown fields, duplicate keys and wrong types are errors.
func decodeStrict(doc []byte, into *manifests) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	strict := func(obj any) error { return yaml.UnmarshalStrict(doc, obj) }
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		var o appsv1.Deployment
		if err := strict(&o); err != nil {
			return err
		}
		into.deployments = append(into.deployments, &o)
	case "v1 Service":
		var o corev1.Service
		if err := strict(&o); err != nil {
			return err
		}
		into.services = append(into.services, &o)
	case "policy/v1 PodDisruptionBudget":
		var o policyv1.PodDisruptionBudget
		if err := strict(&o); err != nil {
			return err
		}
		into.pdbs = append(into.pdbs, &o)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		var o autoscalingv2.HorizontalPodAutoscaler
		if err := strict(&o); err != nil {
			return err
		}
		into.hpas = append(into.hpas, &o)
	default:
		return fmt.Errorf("apiVersion %q kind %q: not a kind this check knows (add it to decodeStrict)", tm.APIVersion, tm.Kind)
	}
	return nil
}

// loadManifests decodes every *.yaml of examples/kubernetes.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in examples/kubernetes: %v", err)
	}
	var m manifests
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(b) {
			if err := decodeStrict(doc, &m); err != nil {
				t.Errorf("%s, document %d: %v", filepath.Base(f), i+1, err)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// TestManifestsDecodeStrictly: every document is a known kind and decodes
// with no unknown field; the example has the four kinds the README
// describes.
func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 || len(m.hpas) != 1 {
		t.Fatalf("%d deployments, %d services, %d PodDisruptionBudgets, %d HorizontalPodAutoscalers; want one each",
			len(m.deployments), len(m.services), len(m.pdbs), len(m.hpas))
	}
}

// TestStrictDecoderRejects: the decoder the checks rely on does reject
// what a strict API server would.
func TestStrictDecoderRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"misspelt field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      terminationGracePeriodSecond: 30\n", "unknown field"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: three\n", "cannot unmarshal"},
		{"duplicate key", "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n", "already set"},
		{"bad quantity", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          resources:\n            limits:\n              cpu: two\n", "quantit"},
		{"unknown kind", "apiVersion: networking.k8s.io/v1\nkind: Ingress\n", "not a kind"},
		{"old API version", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\n", "not a kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m manifests
			err := decodeStrict([]byte(tc.doc), &m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSplitDocuments(t *testing.T) {
	docs := splitDocuments([]byte("# head\n---\na: 1\n---  \n# only a comment\n---\nb: 2\n"))
	if len(docs) != 2 || !bytes.Contains(docs[0], []byte("a: 1")) || !bytes.Contains(docs[1], []byte("b: 2")) {
		t.Fatalf("%q", docs)
	}
}

// dryRun is the part of `gm2-init --dry-run` the checks read.
type dryRun struct {
	Instances  int    `json:"instances"`
	HealthAddr string `json:"health_addr"`
	Listen     []struct {
		Address string `json:"address"`
		Network string `json:"network"`
	} `json:"listen"`
	WorstCaseStop string `json:"worst_case_stop"`
}

// runDryRun runs the real gm2-init with the container's command, args and
// environment, plus extra variables, and --dry-run. The app's program lives
// in the image, not here: a stand-in executable of the same name is put on
// PATH, because only gm2-init's own reading of the configuration is
// checked.
func runDryRun(c corev1.Container, extraEnv ...string) (dryRun, error) {
	var d dryRun
	if len(c.Command) < 2 || filepath.Base(c.Command[0]) != "gm2-init" || c.Command[len(c.Command)-1] != "--" {
		return d, fmt.Errorf("container %s: command %q, want [gm2-init, flags…, --]", c.Name, c.Command)
	}
	if len(c.Args) == 0 {
		return d, fmt.Errorf("container %s: no args: the app gm2-init runs", c.Name)
	}
	stubs, err := os.MkdirTemp("", "gm2-k8s-app-")
	if err != nil {
		return d, err
	}
	defer os.RemoveAll(stubs)
	if !strings.Contains(c.Args[0], "/") {
		if err := os.WriteFile(filepath.Join(stubs, c.Args[0]), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			return d, err
		}
	}
	env := []string{"PATH=" + stubs}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return d, fmt.Errorf("env %s uses valueFrom: its value cannot be checked here", e.Name)
		}
		env = append(env, e.Name+"="+e.Value)
	}
	args := append(append([]string{"--dry-run"}, c.Command[1:]...), c.Args...)
	cmd := exec.Command(gm2init, args...)
	cmd.Env = append(env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return d, fmt.Errorf("gm2-init %s with %q: %v: %s", strings.Join(args, " "), cmd.Env, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), &d); err != nil {
		return d, fmt.Errorf("--dry-run output: %v: %s", err, stdout.String())
	}
	return d, nil
}

// containerPort resolves a probe's or Service's port (a number or a
// container port's name) to a number of container c.
func containerPort(c corev1.Container, p intstr.IntOrString) (int, bool) {
	if p.Type == intstr.Int {
		return p.IntValue(), true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// checkDeployment returns every disagreement between a Deployment and
// gm2-init.
func checkDeployment(d *appsv1.Deployment) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(d.Name+": "+format, args...)) }
	pod := d.Spec.Template.Spec
	if pod.ShareProcessNamespace != nil && *pod.ShareProcessNamespace {
		bad("shareProcessNamespace: true makes the pause container PID 1; gm2-init would no longer reap the pod's orphans")
	}
	if len(pod.Containers) != 1 {
		bad("%d containers; the check expects one, gm2-init's", len(pod.Containers))
		return errs
	}
	c := pod.Containers[0]

	// Every GM2_* value and flag parses, and -i max stays within the CPU
	// limit.
	limit := c.Resources.Limits.Cpu()
	if limit.IsZero() {
		bad("no limits.cpu: -i max would count the node's CPUs (or set GM2_CPUS)")
		return errs
	}
	if limit.MilliValue()%1000 != 0 {
		bad("limits.cpu %s is not a whole number of CPUs: -i max rounds it down", limit)
	}
	if req := c.Resources.Requests.Cpu(); req.Cmp(*limit) != 0 {
		bad("requests.cpu %s differs from limits.cpu %s: the HPA's utilization would not measure the workers' CPU", req, limit)
	}
	if req, lim := c.Resources.Requests.Memory(), c.Resources.Limits.Memory(); lim.IsZero() || req.Cmp(*lim) != 0 {
		bad("requests.memory %s and limits.memory %s: set both, equal (all workers at their peak)", req, lim)
	}
	// The CPU limit becomes a cgroup quota only on a node; here --dry-run
	// is told the count through GM2_CPUS, unless the manifest sets it.
	var extra []string
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GM2_CPUS" }) {
		extra = append(extra, "GM2_CPUS="+strconv.FormatInt(limit.MilliValue()/1000, 10))
	}
	dry, err := runDryRun(c, extra...)
	if err != nil {
		bad("%v", err)
		return errs
	}
	if dry.Instances > int(limit.MilliValue()/1000) {
		bad("%d workers for a limit of %s CPUs: they would share the quota", dry.Instances, limit)
	}

	// The probes reach gm2-init's health endpoints.
	if dry.HealthAddr == "off" {
		bad("GM2_HEALTH_ADDR is off, yet the probes need it")
		return errs
	}
	healthPort, err := portOf(dry.HealthAddr)
	if err != nil {
		bad("health address %q: %v", dry.HealthAddr, err)
	}
	if h, _, _ := net.SplitHostPort(dry.HealthAddr); h != "" && h != "0.0.0.0" && h != "::" {
		bad("health address %q: the kubelet probes the Pod IP, bind all interfaces (\":%d\")", dry.HealthAddr, healthPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startupProbe", c.StartupProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/livez"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			bad("%s: want an httpGet of %s on gm2-init's health port", p.name, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			bad("%s path %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if port, ok := containerPort(c, p.probe.HTTPGet.Port); !ok || port != healthPort {
			bad("%s port %s is %d, gm2-init's health address is %s", p.name, p.probe.HTTPGet.Port.String(), port, dry.HealthAddr)
		}
	}
	declared := map[int]bool{}
	for _, cp := range c.Ports {
		declared[int(cp.ContainerPort)] = true
	}
	if !declared[healthPort] {
		bad("the health port %d is not a containerPort", healthPort)
	}
	for _, l := range dry.Listen {
		if !strings.HasPrefix(l.Network, "tcp") {
			continue
		}
		if p, err := portOf(l.Address); err != nil || !declared[p] {
			bad("gm2-init listens on %s, which is not a containerPort", l.Address)
		}
	}

	// The grace period covers gm2-init's worst-case stop, as gm2-init
	// computes it, plus any preStop hook.
	worst, err := time.ParseDuration(dry.WorstCaseStop)
	if err != nil {
		bad("--dry-run shows no worst_case_stop (%q): %v", dry.WorstCaseStop, err)
		return errs
	}
	grace := 30 * time.Second // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	preStop, err := preStopDuration(c)
	if err != nil {
		bad("%v", err)
	}
	if preStop+worst > grace {
		bad("terminationGracePeriodSeconds %v < preStop %v + gm2-init's worst_case_stop %v: Kubernetes would SIGKILL the workers mid-drain", grace, preStop, worst)
	}
	return errs
}

// preStopDuration bounds the preStop hook: none, a sleep action, or an exec
// of `sleep N`.
func preStopDuration(c corev1.Container) (time.Duration, error) {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0, nil
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		return time.Duration(h.Sleep.Seconds) * time.Second, nil
	case h.Exec != nil && len(h.Exec.Command) == 2 && filepath.Base(h.Exec.Command[0]) == "sleep":
		n, err := strconv.Atoi(h.Exec.Command[1])
		if err == nil {
			return time.Duration(n) * time.Second, nil
		}
	}
	return 0, errors.New("a preStop hook whose duration the check cannot bound: use sleep, or GM2_SHUTDOWN_DELAY")
}

// selects reports whether a selector picks the Deployment's pods.
func selects(sel map[string]string, d *appsv1.Deployment) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if d.Spec.Template.Labels[k] != v {
			return false
		}
	}
	return true
}

// checkOthers returns every disagreement between the Service, the
// PodDisruptionBudget, the HorizontalPodAutoscaler and the Deployment.
func checkOthers(m manifests) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	d := m.deployments[0]
	c := d.Spec.Template.Spec.Containers[0]
	if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d) {
		bad("deployment %s: its selector does not match its own pod labels", d.Name)
	}
	for _, s := range m.services {
		if !selects(s.Spec.Selector, d) {
			bad("service %s: selector %v does not select deployment %s's pods", s.Name, s.Spec.Selector, d.Name)
		}
		for _, p := range s.Spec.Ports {
			if _, ok := containerPort(c, p.TargetPort); !ok {
				bad("service %s: targetPort %s names no container port", s.Name, p.TargetPort.String())
			}
		}
	}
	var maxUnavailable int
	for _, p := range m.pdbs {
		if p.Spec.Selector == nil || !selects(p.Spec.Selector.MatchLabels, d) {
			bad("PodDisruptionBudget %s does not select deployment %s's pods", p.Name, d.Name)
		}
		switch {
		case p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.Type == intstr.Int:
			maxUnavailable = p.Spec.MaxUnavailable.IntValue()
		case p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil:
			bad("PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", p.Name)
		}
	}
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
			bad("HPA %s scales %s %s %s, not deployment %s", h.Name, ref.APIVersion, ref.Kind, ref.Name, d.Name)
		}
		if d.Spec.Replicas != nil {
			bad("deployment %s sets replicas while HPA %s owns them: every apply would reset the autoscaler", d.Name, h.Name)
		}
		if h.Spec.MinReplicas == nil || int(*h.Spec.MinReplicas) <= maxUnavailable {
			bad("HPA %s: minReplicas must exceed the PodDisruptionBudget's maxUnavailable (%d), or a drain leaves no pod", h.Name, maxUnavailable)
		}
		for _, mt := range h.Spec.Metrics {
			if mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU &&
				mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType && c.Resources.Requests.Cpu().IsZero() {
				bad("HPA %s scales on CPU utilization, which needs requests.cpu", h.Name)
			}
		}
	}
	return errs
}

// TestManifestsAgreeWithGm2Init runs every check on the example.
func TestManifestsAgreeWithGm2Init(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) != 1 {
		t.Fatalf("%d deployments, want 1", len(m.deployments))
	}
	for _, err := range append(checkDeployment(m.deployments[0]), checkOthers(m)...) {
		t.Error(err)
	}
	dry, err := runDryRun(m.deployments[0].Spec.Template.Spec.Containers[0], "GM2_CPUS=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gm2-init --dry-run: %d workers for 2 CPUs, health on %s, worst-case stop %s, grace period %ds",
		dry.Instances, dry.HealthAddr, dry.WorstCaseStop, *m.deployments[0].Spec.Template.Spec.TerminationGracePeriodSeconds)
}

// TestChecksCatchMistakes: each check fails on a copy of the example with
// the mistake it exists for.
func TestChecksCatchMistakes(t *testing.T) {
	base := loadManifests(t)
	for _, tc := range []struct {
		name   string
		mutate func(m *manifests)
		want   string
	}{
		{"liveness on the app port", func(m *manifests) {
			m.deployments[0].Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Port = intstr.FromString("http")
		}, "livenessProbe port"},
		{"readiness path", func(m *manifests) {
			m.deployments[0].Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/healthz"
		}, "readinessProbe path"},
		{"health address moved", func(m *manifests) {
			setEnv(m, "GM2_HEALTH_ADDR", ":9100")
		}, "gm2-init's health address is :9100"},
		{"health on loopback", func(m *manifests) {
			setEnv(m, "GM2_HEALTH_ADDR", "127.0.0.1:9000")
		}, "the kubelet probes the Pod IP"},
		{"duration without unit", func(m *manifests) {
			setEnv(m, "GM2_KILL_TIMEOUT", "20000")
		}, "GM2_KILL_TIMEOUT"},
		{"grace period too short", func(m *manifests) {
			g := int64(20)
			m.deployments[0].Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}, "worst_case_stop"},
		{"long kill timeout", func(m *manifests) {
			setEnv(m, "GM2_KILL_TIMEOUT", "40s")
		}, "worst_case_stop"},
		{"preStop sleep over budget", func(m *manifests) {
			m.deployments[0].Spec.Template.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 10}}}
		}, "preStop 10s"},
		{"fractional CPU limit", func(m *manifests) {
			q := m.deployments[0].Spec.Template.Spec.Containers[0].Resources
			q.Limits[corev1.ResourceCPU] = mustQuantity("1500m")
			q.Requests[corev1.ResourceCPU] = mustQuantity("1500m")
		}, "not a whole number"},
		{"more workers than the limit", func(m *manifests) {
			c := &m.deployments[0].Spec.Template.Spec.Containers[0]
			c.Command = []string{"gm2-init", "-i", "4", "--listen", ":8080", "--"}
		}, "4 workers for a limit of 2"},
		{"app port not declared", func(m *manifests) {
			c := &m.deployments[0].Spec.Template.Spec.Containers[0]
			c.Command = []string{"gm2-init", "-i", "max", "--listen", ":8081", "--"}
		}, "not a containerPort"},
		{"replicas next to the HPA", func(m *manifests) {
			r := int32(3)
			m.deployments[0].Spec.Replicas = &r
		}, "owns them"},
		{"HPA on another deployment", func(m *manifests) {
			m.hpas[0].Spec.ScaleTargetRef.Name = "other"
		}, "not deployment myapp"},
		{"PDB selects nothing", func(m *manifests) {
			m.pdbs[0].Spec.Selector.MatchLabels = map[string]string{"app": "other"}
		}, "does not select"},
		{"shared process namespace", func(m *manifests) {
			yes := true
			m.deployments[0].Spec.Template.Spec.ShareProcessNamespace = &yes
		}, "shareProcessNamespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := deepCopy(base)
			tc.mutate(&m)
			errs := append(checkDeployment(m.deployments[0]), checkOthers(m)...)
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tc.want) }) {
				t.Fatalf("no error containing %q; got %v", tc.want, errs)
			}
		})
	}
}

func setEnv(m *manifests, name, value string) {
	c := &m.deployments[0].Spec.Template.Spec.Containers[0]
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i].Value = value
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

func deepCopy(m manifests) manifests {
	var out manifests
	for _, d := range m.deployments {
		out.deployments = append(out.deployments, d.DeepCopy())
	}
	for _, s := range m.services {
		out.services = append(out.services, s.DeepCopy())
	}
	for _, p := range m.pdbs {
		out.pdbs = append(out.pdbs, p.DeepCopy())
	}
	for _, h := range m.hpas {
		out.hpas = append(out.hpas, h.DeepCopy())
	}
	return out
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

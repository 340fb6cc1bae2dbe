package appspec

import (
	"slices"
	"testing"
)

func app(name, inst string, mode ExecMode) App {
	spec, err := ParseInstances(inst)
	if err != nil {
		panic(err)
	}
	return App{Name: name, Instances: spec, ExecMode: mode}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name    string
		apps    []App
		cpus    int
		want    []int
		explain string
		over    bool
	}{
		{"one max app", []App{app("api", "max", Cluster)}, 8, []int{8},
			"8 usable CPUs: api 8 (max: the 8 CPUs left)", false},
		{"max next to a fork worker", []App{app("api", "max", Cluster), app("worker", "1", Fork)}, 8, []int{7, 1},
			"8 usable CPUs: api 7 (max: the 7 CPUs left), worker 1 (fork)", false},
		{"fork ignores its instances", []App{app("worker", "max", Fork)}, 8, []int{1},
			"8 usable CPUs: worker 1 (fork)", false},
		{"two max apps share", []App{app("a", "max", Cluster), app("b", "0", Cluster)}, 8, []int{4, 4},
			"8 usable CPUs: a 4 (max: 4 of the 8 CPUs left), b 4 (max: 4 of the 8 CPUs left)", false},
		{"remainder to the first", []App{app("a", "max", Cluster), app("b", "max", Cluster)}, 5, []int{3, 2},
			"5 usable CPUs: a 3 (max: 3 of the 5 CPUs left), b 2 (max: 2 of the 5 CPUs left)", false},
		{"minus N after the share", []App{app("api", "-1", Cluster), app("jobs", "2", Cluster)}, 8, []int{5, 2},
			"8 usable CPUs: api 5 (-1: the 6 CPUs left, minus 1), jobs 2 (fixed)", false},
		{"nothing left: at least 1", []App{app("api", "max", Cluster), app("jobs", "2", Cluster)}, 2, []int{1, 2},
			"2 usable CPUs: api 1 (max: no CPU left, at least 1), jobs 2 (fixed); 3 workers on 2 CPUs: they compete for the same CPU quota", true},
		{"minus more than the share", []App{app("api", "-4", Cluster)}, 2, []int{1},
			"2 usable CPUs: api 1 (-4: the 2 CPUs left, at least 1)", false},
		{"one CPU", []App{app("api", "max", Cluster), app("w", "1", Fork)}, 1, []int{1, 1},
			"1 usable CPU: api 1 (max: no CPU left, at least 1), w 1 (fork); 2 workers on 1 CPU: they compete for the same CPU quota", true},
		{"cpus below 1 count as 1", []App{app("api", "max", Cluster)}, 0, []int{1},
			"1 usable CPU: api 1 (max: the 1 CPU left)", false},
		{"fixed above the CPUs", []App{app("api", "4", Cluster)}, 2, []int{4},
			"2 usable CPUs: api 4 (fixed); 4 workers on 2 CPUs: they compete for the same CPU quota", true},
		{"fixed above the CPUs, max next to it", []App{app("api", "max", Cluster), app("jobs", "4", Cluster)}, 2, []int{1, 4},
			"2 usable CPUs: api 1 (max: no CPU left, at least 1), jobs 4 (fixed); 5 workers on 2 CPUs: they compete for the same CPU quota", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, explain, over := Split(tt.apps, tt.cpus)
			if !slices.Equal(got, tt.want) || explain != tt.explain || over != tt.over {
				t.Errorf("Split = %v, %q, %v\nwant    %v, %q, %v", got, explain, over, tt.want, tt.explain, tt.over)
			}
		})
	}
}

// The relative apps never push the total past MaxWorkers, however many
// CPUs --cpus claims; the fixed ones keep their counts.
func TestSplitCap(t *testing.T) {
	apps := []App{app("a", "max", Cluster), app("b", "1000", Cluster), app("c", "max", Cluster)}
	got, _, _ := Split(apps, 100000)
	total := 0
	for _, n := range got {
		total += n
	}
	if got[1] != 1000 || total != MaxWorkers {
		t.Errorf("Split = %v (total %d), want b 1000 and a total of %d", got, total, MaxWorkers)
	}
}

func FuzzSplit(f *testing.F) {
	f.Add(uint8(3), uint16(8), uint8(0b101), uint8(0b010), uint16(1))
	f.Fuzz(func(t *testing.T, n uint8, cpus uint16, relMask, forkMask uint8, fixedN uint16) {
		var apps []App
		fixedSum := 0
		for i := range int(n % 9) {
			a := App{Name: string(rune('a' + i))}
			switch {
			case forkMask&(1<<i) != 0:
				a.ExecMode, a.Instances = Fork, Instances{N: 1}
				fixedSum++
			case relMask&(1<<i) != 0:
				a.ExecMode, a.Instances = Cluster, Instances{Relative: true, N: int(fixedN % 5)}
			default:
				a.ExecMode, a.Instances = Cluster, Instances{N: 1 + int(fixedN%100)}
				fixedSum += a.Instances.N
			}
			apps = append(apps, a)
		}
		got, explain, over := Split(apps, int(cpus))
		total := 0
		for i, c := range got {
			if c < 1 {
				t.Fatalf("app %d got %d workers", i, c)
			}
			if !apps[i].Instances.Relative && apps[i].ExecMode != Fork && c != apps[i].Instances.N {
				t.Fatalf("fixed app %d got %d, want %d", i, c, apps[i].Instances.N)
			}
			if apps[i].ExecMode == Fork && c != 1 {
				t.Fatalf("fork app %d got %d", i, c)
			}
			total += c
		}
		relative := len(apps) - 0
		for _, a := range apps {
			if !a.Instances.Relative || a.ExecMode == Fork {
				relative--
			}
		}
		if relative > 0 && total > max(MaxWorkers, fixedSum+relative) {
			t.Fatalf("total %d > MaxWorkers", total)
		}
		if over != (total > max(1, int(cpus))) || (len(apps) > 0 && explain == "") {
			t.Fatalf("Split(%v, %d) = %v, %q, %v", apps, cpus, got, explain, over)
		}
	})
}

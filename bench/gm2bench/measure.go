package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Mem is the memory of one process, in kB.
type Mem struct {
	RSS, PSS int64
	Threads  int
	FDs      int
}

func memOf(pid int) Mem {
	var m Mem
	m.RSS = statusField(pid, "VmRSS")
	m.Threads = int(statusField(pid, "Threads"))
	m.PSS = kbField("/proc/"+strconv.Itoa(pid)+"/smaps_rollup", "Pss")
	m.FDs = fdCount(pid)
	return m
}

func statusField(pid int, key string) int64 {
	return kbField("/proc/"+strconv.Itoa(pid)+"/status", key)
}

// kbField reads "Key:   123 kB" (or a bare number) from a /proc file.
func kbField(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			return -1
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		return n
	}
	return -1
}

func fdCount(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// Activity is what an idle process did: context switches of all its threads
// and CPU time (ns, from schedstat, summed over threads).
type Activity struct {
	Switches int64
	CPUNs    int64
	Ticks    int64 // utime+stime in clock ticks (includes exited threads)
	Threads  int
}

func activityOf(pid int) Activity {
	var a Activity
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*")
	for _, t := range tasks {
		v := kbField(t+"/status", "voluntary_ctxt_switches")
		n := kbField(t+"/status", "nonvoluntary_ctxt_switches")
		if v >= 0 {
			a.Switches += v
		}
		if n >= 0 {
			a.Switches += n
		}
		if b, err := os.ReadFile(t + "/schedstat"); err == nil {
			if fs := strings.Fields(string(b)); len(fs) > 0 {
				ns, _ := strconv.ParseInt(fs[0], 10, 64)
				a.CPUNs += ns
			}
		}
		a.Threads++
	}
	if st, ok := readStat(pid); ok {
		a.Ticks = int64(st.utime + st.stime)
	}
	return a
}

// millis is a duration in milliseconds that may be unknown (NaN), which
// JSON cannot carry: it is written as null and read back as NaN.
type millis float64

func (m millis) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(m)) || math.IsInf(float64(m), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(m))
}

func (m *millis) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*m = millis(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*m = millis(f)
	return nil
}

// Summary of repeated measurements.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Q1     float64 `json:"q1"` // quartiles, nearest rank
	Q3     float64 `json:"q3"`
}

func summarize(xs []float64) Summary {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN(), Q1: math.NaN(), Q3: math.NaN()}
	}
	sort.Float64s(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Summary{N: len(v), Median: m, Min: v[0], Max: v[len(v)-1], Q1: v[(len(v)-1)/4], Q3: v[(3*(len(v)-1)+3)/4]}
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return math.NaN()
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / d
}

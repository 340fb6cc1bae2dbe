package procfs

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

const smapsRollup = `5608934d0000-7ffcb5bb3000 ---p 00000000 00:00 0                          [rollup]
Rss:                1632 kB
Pss:                 261 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Shared_Clean:       1480 kB
Private_Dirty:       112 kB
Swap:                  0 kB
`

const procStatus = "Name:\tnode (x): y\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t42\nPPid:\t1\n" +
	"VmPeak:\t 1234 kB\nVmRSS:\t   9876 kB\nRssAnon:\t    100 kB\nThreads:\t11\nCpus_allowed_list:\t0-3\n"

func TestParseKBFields(t *testing.T) {
	type want struct {
		key string
		v   uint64
	}
	tests := []struct {
		name    string
		data    string
		keys    []string
		want    []want
		found   int
		wantErr string
	}{
		{"smaps_rollup Pss", smapsRollup, []string{"Pss"}, []want{{"Pss", 261 * 1024}}, 1, ""},
		{"smaps_rollup Rss and Pss", smapsRollup, []string{"Rss", "Pss"}, []want{{"Rss", 1632 * 1024}, {"Pss", 261 * 1024}}, 2, ""},
		{"Pss_Anon is not Pss", "Pss_Anon: 5 kB\n", []string{"Pss"}, []want{{"Pss", 0}}, 0, ""},
		{"status VmRSS", procStatus, []string{"VmRSS"}, []want{{"VmRSS", 9876 * 1024}}, 1, ""},
		{"status bare count", procStatus, []string{"Threads"}, []want{{"Threads", 11}}, 1, ""},
		{"no final newline", "Pss: 3 kB", []string{"Pss"}, []want{{"Pss", 3072}}, 1, ""},
		{"missing key", smapsRollup, []string{"Locked"}, []want{{"Locked", 0}}, 0, ""},
		{"empty file", "", []string{"Pss"}, nil, 0, ""},
		{"odd unit", "Pss: 3 MB\n", []string{"Pss"}, nil, 0, `unit "MB"`},
		{"trailing field", "Pss: 3 kB x\n", []string{"Pss"}, nil, 0, "trailing"},
		{"not a number", "Pss: -3 kB\n", []string{"Pss"}, nil, 0, "not a counter"},
		{"no value", "Pss:\n", []string{"Pss"}, nil, 0, "not a counter"},
		{"kB overflow", "Pss: 18014398509481984 kB\n", []string{"Pss"}, nil, 0, "overflows"},
		{"unwanted garbage ignored", "Garbage: x y z\nPss: 1 kB\n", []string{"Pss"}, []want{{"Pss", 1024}}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := make([]uint64, len(tt.keys))
			var fields []kbField
			for i, k := range tt.keys {
				fields = append(fields, kbField{k, &vals[i]})
			}
			found, err := parseKBFields([]byte(tt.data), fields)
			if tt.wantErr != "" {
				if !errors.Is(err, errBadKB) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || found != tt.found {
				t.Fatalf("found %d, err %v; want %d", found, err, tt.found)
			}
			for _, w := range tt.want {
				for i, k := range tt.keys {
					if k == w.key && vals[i] != w.v {
						t.Errorf("%s = %d, want %d", k, vals[i], w.v)
					}
				}
			}
		})
	}
}

// FuzzParseKBFields: no panic, found never exceeds the lines, and a line
// built from any key and value parses back.
func FuzzParseKBFields(f *testing.F) {
	f.Add([]byte(smapsRollup), "Pss", uint64(5))
	f.Add([]byte(procStatus), "VmRSS", uint64(0))
	f.Add([]byte("::\n:"), "", uint64(1<<54-1))
	f.Fuzz(func(t *testing.T, data []byte, key string, kb uint64) {
		var v uint64
		found, _ := parseKBFields(data, []kbField{{"Pss", &v}})
		if found > strings.Count(string(data), ":") {
			t.Fatalf("found %d keys in %q", found, data)
		}
		if key == "" || strings.ContainsAny(key, ":\n") {
			return
		}
		kb %= 1 << 54
		line := fmt.Sprintf("Other: 1 kB\n%s:\t%d kB\n", key, kb)
		found, err := parseKBFields([]byte(line), []kbField{{key, &v}})
		if err != nil || found != 1 || v != kb*1024 {
			t.Fatalf("parseKBFields(%q) = %d, %d, %v", line, v, found, err)
		}
	})
}

func TestReadPSSOfSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skipf("no smaps_rollup (Linux 4.14+): %v", err)
	}
	pss, err := ReadPSS("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	u := ReadSelf("/proc")
	// PSS counts at most every resident page in full.
	if pss == 0 || pss > u.ResidentBytes+(1<<20) {
		t.Errorf("PSS %d, RSS %d", pss, u.ResidentBytes)
	}
	if _, err := ReadPSS("/proc", 1<<30); !isGone(err) {
		t.Errorf("ReadPSS(no such pid): %v", err)
	}
}

package procfs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// statLine builds a stat line as Linux 6.x writes it (52 fields), with the
// given comm and the fields this package reads.
func statLine(pid int, comm string, state byte, ppid int, utime, stime, cutime, cstime uint64, threads int, start, vsize, rss uint64) string {
	return fmt.Sprintf("%d (%s) %c %d %d %d 0 -1 4194560 2117 0 0 0 %d %d %d %d 20 0 %d 0 %d %d %d 18446744073709551615 "+
		"94338144055296 94338144844701 140732183593216 0 0 0 65536 4 1132560123 1 0 0 17 0 0 0 0 0 0 "+
		"94338145078000 94338145126244 94338448617472 140732183595869 140732183595884 140732183595884 140732183597034 0\n",
		pid, comm, state, ppid, pid, pid, utime, stime, cutime, cstime, threads, start, vsize, rss)
}

func TestParseStatFull(t *testing.T) {
	want := Stat{State: 'S', PPid: 1, PGrp: 42, UTime: 250, STime: 50, CUTime: 7, CSTime: 3, Threads: 8,
		StartTime: 12345, VSizeBytes: 1 << 30, RSSPages: 300}
	tests := []struct {
		name    string
		line    string
		want    Stat
		wantErr string
	}{
		{"linux 6", statLine(42, "node", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300), want, ""},
		{"comm with spaces and parens", statLine(42, "gm2 (init) x", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300), want, ""},
		{"comm is ')'", statLine(42, ")", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300), want, ""},
		{"comm with newline", statLine(42, "a\nb", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300), want, ""},
		{"comm mimics fields", statLine(42, "x) R 9 9 9 0 -1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300), want, ""},
		{"ends at rss", "42 (node) S 1 42 42 0 -1 4194560 2117 0 0 0 250 50 7 3 20 0 8 0 12345 1073741824 300", want, ""},
		{"zombie", statLine(42, "sh", 'Z', 1, 1, 2, 0, 0, 1, 5, 0, 0),
			Stat{State: 'Z', PPid: 1, PGrp: 42, UTime: 1, STime: 2, Threads: 1, StartTime: 5}, ""},
		{"max counters", statLine(42, "x", 'R', 1, 1<<64-1, 0, 0, 0, 1, 0, 0, 0),
			Stat{State: 'R', PPid: 1, PGrp: 42, UTime: 1<<64 - 1, Threads: 1}, ""},

		{"stops before rss", "42 (node) S 1 42 42 0 -1 4194560 2117 0 0 0 250 50 7 3 20 0 8 0 12345 1073741824", Stat{}, "23 fields"},
		{"ppid only", "42 (node) S 1", Stat{}, "4 fields"},
		{"no paren", "42 node S 1 42", Stat{}, "no ')'"},
		{"empty", "", Stat{}, "no ')'"},
		{"no ppid", "42 (x) S", Stat{}, "no ppid"},
		{"negative cutime", strings.Replace(statLine(42, "x", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300), " 7 3 ", " -7 3 ", 1), Stat{}, "field 16"},
		{"zero threads (exiting)", statLine(42, "x", 'S', 1, 250, 50, 7, 3, 0, 12345, 1<<30, 300),
			Stat{State: 'S', PPid: 1, PGrp: 42, UTime: 250, STime: 50, CUTime: 7, CSTime: 3, StartTime: 12345, VSizeBytes: 1 << 30, RSSPages: 300}, ""},
		{"too many threads", statLine(42, "x", 'S', 1, 250, 50, 7, 3, 1<<31, 12345, 1<<30, 300), Stat{}, "num_threads"},
		{"utime overflow", strings.Replace(statLine(42, "x", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300), " 250 ", " 18446744073709551616 ", 1), Stat{}, "overflows"},
		{"garbage rss", strings.Replace(statLine(42, "x", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300), " 300 ", " 3e2 ", 1), Stat{}, "field 24"},
		{"bad pgrp", "42 (x) S 1 x 42 0 -1 4194560 2117 0 0 0 250 50 7 3 20 0 8 0 12345 1073741824 300", Stat{}, "field 5"},
		{"state word", "42 (x) Sleeping 1 42", Stat{}, "not one letter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.line), true)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errBadStat) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStat(%q) error = %v, want one wrapping errBadStat with %q", tt.line, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseStat(%q): %v", tt.line, err)
			}
			if got != tt.want {
				t.Errorf("parseStat(%q) =\n%+v, want\n%+v", tt.line, got, tt.want)
			}
		})
	}
}

// TestParseStatNotFull: the ancestor walk reads state, ppid and pgrp and
// nothing else, so a short or odd tail costs it nothing.
func TestParseStatNotFull(t *testing.T) {
	for _, tc := range []struct {
		line       string
		ppid, pgrp int
	}{
		{"5 (x) S 6", 6, -1},
		{"5 (x) S 6 7", 6, 7},
		{"5 (x) S 6 x", 6, -1},
		{"5 (x) S 6 7 0 -1 1 1 1 1 1 garbage", 6, 7},
		{statLine(5, "x", 'S', 6, 1, 1, 1, 1, 1, 1, 1, 1), 6, 5},
	} {
		st, err := parseStat([]byte(tc.line), false)
		if err != nil || st.PPid != tc.ppid || st.PGrp != tc.pgrp {
			t.Errorf("parseStat(%q, false) = %+v, %v; want ppid %d pgrp %d", tc.line, st, err, tc.ppid, tc.pgrp)
		}
		if st.UTime != 0 || st.Threads != 0 {
			t.Errorf("parseStat(%q, false) filled usage fields: %+v", tc.line, st)
		}
	}
}

func TestParseStatAllocatesNothing(t *testing.T) {
	line := []byte(statLine(42, "node (x)", 'S', 1, 250, 50, 7, 3, 8, 12345, 1<<30, 300))
	if n := testing.AllocsPerRun(100, func() { _, _ = parseStat(line, true) }); n != 0 {
		t.Errorf("parseStat allocates %v times per call", n)
	}
}

// FuzzParseStat checks that any input parses without panicking, that a
// successful full parse is also a successful short parse with the same ids,
// and that a line built around an arbitrary comm yields exactly the values
// written after it.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statLine(1, "x", 'S', 0, 1, 2, 3, 4, 5, 6, 7, 8)), []byte("a) b (c"), uint32(42), uint64(250), uint16(8), uint64(300))
	f.Add([]byte("5 (x) S 6"), []byte(")"), uint32(0), uint64(0), uint16(1), uint64(0))
	f.Add([]byte(")))"), []byte("\n\t "), uint32(1<<31-1), uint64(1<<64-1), uint16(65535), uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, data, comm []byte, ppid uint32, utime uint64, threads uint16, rss uint64) {
		full, ferr := parseStat(data, true)
		short, serr := parseStat(data, false)
		if ferr == nil {
			if serr != nil || short.PPid != full.PPid || short.PGrp != full.PGrp || short.State != full.State {
				t.Fatalf("full parse %+v but short parse %+v, %v", full, short, serr)
			}
			if full.Threads < 0 || full.Threads > MaxPid {
				t.Fatalf("threads %d out of range", full.Threads)
			}
		}
		if serr == nil && (short.PPid < 0 || short.PPid > MaxPid) {
			t.Fatalf("ppid %d out of range", short.PPid)
		}

		wantPPid := int(ppid % (MaxPid + 1))
		th := int(threads) + 1
		line := statLine(123, string(comm), 'R', wantPPid, utime, 9, 0, 1, th, 77, 4096, rss)
		got, err := parseStat([]byte(line), true)
		want := Stat{State: 'R', PPid: wantPPid, PGrp: 123, UTime: utime, STime: 9, CSTime: 1, Threads: th, StartTime: 77, VSizeBytes: 4096, RSSPages: rss}
		if err != nil || got != want {
			t.Fatalf("parseStat(%q) = %+v, %v; want %+v", line, got, err, want)
		}
	})
}

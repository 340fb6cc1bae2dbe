package notify

import (
	"github.com/gm2-init/gm2-init/internal/procfs"

	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    Message
	}{
		{"empty", "", Message{}},
		{"ready", "READY=1", Message{Ready: true}},
		{"ready with newline", "READY=1\n", Message{Ready: true}},
		{"gunicorn", "READY=1\nSTATUS=Gunicorn arbiter booted", Message{Ready: true, Status: "Gunicorn arbiter booted", HasStatus: true}},
		{"several lines and flags", "STATUS=reloading\nRELOADING=1\nMONOTONIC_USEC=123\n", Message{Reloading: true, Status: "reloading", HasStatus: true}},
		{"stopping", "STOPPING=1", Message{Stopping: true}},
		{"ready needs exactly 1", "READY=yes\nSTOPPING=0\nRELOADING=11", Message{}},
		{"keys are case-sensitive", "ready=1\nStatus=x", Message{}},
		{"unknown keys ignored", "WATCHDOG=1\nERRNO=2\nFDSTORE=1\nBUSERROR=x", Message{}},
		{"empty lines", "\n\nREADY=1\n\n\n", Message{Ready: true}},
		{"crlf", "READY=1\r\nSTATUS=up\r\n", Message{Ready: true, Status: "up", HasStatus: true}},
		{"only one cr removed", "STATUS=a\r\r\n", Message{Status: "a\r", HasStatus: true}},
		{"line without equals", "READY\nREADY=1", Message{Ready: true}},
		{"empty status", "STATUS=", Message{HasStatus: true}},
		{"first status counts", "STATUS=a\nSTATUS=b", Message{Status: "a", HasStatus: true}},
		{"first empty status counts", "STATUS=\nSTATUS=b", Message{HasStatus: true}},
		{"first mainpid counts", "MAINPID=7\nMAINPID=8", Message{MainPid: 7}},
		{"first mainpid counts even invalid", "MAINPID=x\nMAINPID=8", Message{}},
		{"status keeps equals", "STATUS=a=b=c", Message{Status: "a=b=c", HasStatus: true}},
		{"status keeps spaces", "STATUS=  spaced  ", Message{Status: "  spaced  ", HasStatus: true}},
		{"status invalid utf8", "STATUS=a\xffb", Message{Status: "a\uFFFDb", HasStatus: true}},
		{"status utf8", "STATUS=prêt ✓", Message{Status: "prêt ✓", HasStatus: true}},
		{"ready stays once set", "READY=1\nREADY=0", Message{Ready: true}},
		{"mainpid", "MAINPID=4242", Message{MainPid: 4242}},
		{"mainpid max", "MAINPID=2147483647", Message{MainPid: 2147483647}},
		{"mainpid overflow", "MAINPID=2147483648", Message{}},
		{"mainpid huge", "MAINPID=99999999999999999999", Message{}},
		{"mainpid zero", "MAINPID=0", Message{}},
		{"mainpid negative", "MAINPID=-5", Message{}},
		{"mainpid plus", "MAINPID=+5", Message{}},
		{"mainpid space", "MAINPID= 5", Message{}},
		{"mainpid empty", "MAINPID=", Message{}},
		{"mainpid junk", "MAINPID=12a", Message{}},
		{"trailing NULs dropped", "READY=1\x00\x00", Message{Ready: true}},
		{"embedded NUL drops the line", "READY=1\x00x\nSTATUS=ok", Message{Status: "ok", HasStatus: true}},
		{"equals in key position", "=1\n=\n", Message{}},
		{"key with spaces is another key", " READY=1\nREADY =1", Message{}},
		{"flags need exactly 1, every one", "STOPPING=yes\nRELOADING=true\nREADY=", Message{}},
		{"NUL inside a status drops the line", "STATUS=a\x00b\nREADY=1", Message{Ready: true}},
		{"NUL before the final newline drops the line", "READY=1\x00\n", Message{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse([]byte(tt.payload)); got != tt.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.payload, got, tt.want)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that what it returns is
// consistent with its input, whatever the bytes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "READY=1", "READY=1\nSTATUS=x\n", "STATUS=\xff\r\n", "MAINPID=123\nSTOPPING=1",
		"RELOADING=1\nMONOTONIC_USEC=1\n", "\x00READY=1\x00", "=\n=\n\r\n", "STATUS=a=b\nMAINPID=-1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m := Parse(payload)
		if m.Pid != 0 {
			t.Fatalf("Parse set Pid %d", m.Pid)
		}
		if m.MainPid < 0 || m.MainPid > procfs.MaxPid {
			t.Fatalf("MainPid %d out of range", m.MainPid)
		}
		if !m.HasStatus && m.Status != "" {
			t.Fatalf("Status %q without HasStatus", m.Status)
		}
		if !utf8.ValidString(m.Status) || strings.ContainsAny(m.Status, "\n\x00") {
			t.Fatalf("Status %q is not one clean line", m.Status)
		}
		for flag, line := range map[*bool]string{&m.Ready: "READY=1", &m.Reloading: "RELOADING=1", &m.Stopping: "STOPPING=1"} {
			if *flag && !bytes.Contains(payload, []byte(line)) {
				t.Fatalf("flag for %s set but payload %q does not contain it", line, payload)
			}
		}
		if m.HasStatus && !bytes.Contains(payload, []byte("STATUS=")) {
			t.Fatalf("HasStatus without STATUS= in %q", payload)
		}
	})
}

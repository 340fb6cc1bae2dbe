package health

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// parseHead runs what serveConn runs on the bytes a client sent: readHead,
// then parseRequest. code is 0 for a request that is answered normally.
func parseHead(data []byte, read func(io.Reader) io.Reader) (request, int, error) {
	head, err := readHead(read(bytes.NewReader(data)), make([]byte, maxHeaderBytes))
	if err == nil {
		var req request
		req, err = parseRequest(head)
		if err == nil {
			return req, 0, nil
		}
	}
	var rerr *requestError
	if errors.As(err, &rerr) {
		return request{}, rerr.code, err
	}
	return request{}, -1, err
}

func identity(r io.Reader) io.Reader { return r }

func TestParseRequest(t *testing.T) {
	big := "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n"
	// The largest head that fits: exactly maxHeaderBytes bytes.
	fits := "GET /livez HTTP/1.1\r\nHost: x\r\nX-Fill: "
	fits += strings.Repeat("a", maxHeaderBytes-len(fits)-len("\r\n\r\n")) + "\r\n\r\n"

	for _, tc := range []struct {
		name string
		in   string
		code int // 0: parsed; -1: no answer (incomplete head)
		want request
	}{
		{"origin form", "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", 0, request{"GET", "/livez", "", 1}},
		{"query", "GET /readyz?verbose=1&x HTTP/1.1\r\nHost: x\r\n\r\n", 0, request{"GET", "/readyz", "verbose=1&x", 1}},
		{"HEAD", "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, request{"HEAD", "/metrics", "", 1}},
		{"HTTP/1.0 without Host", "GET /livez HTTP/1.0\r\n\r\n", 0, request{"GET", "/livez", "", 0}},
		{"LF only", "GET /livez HTTP/1.1\nHost: x\n\n", 0, request{"GET", "/livez", "", 1}},
		{"mixed line endings", "GET /livez HTTP/1.1\r\nHost: x\n\r\n", 0, request{"GET", "/livez", "", 1}},
		{"leading empty lines", "\r\n\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n", 0, request{"GET", "/livez", "", 1}},
		{"absolute form", "GET http://10.0.0.1:9000/readyz?verbose HTTP/1.1\r\nHost: 10.0.0.1:9000\r\n\r\n", 0, request{"GET", "/readyz", "verbose", 1}},
		{"absolute form, scheme case", "GET HTTP://h/livez HTTP/1.1\r\nHost: h\r\n\r\n", 0, request{"GET", "/livez", "", 1}},
		{"absolute form, IPv6", "GET http://[::1]:9000/livez HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n", 0, request{"GET", "/livez", "", 1}},
		{"empty Host", "GET /livez HTTP/1.1\r\nHost:\r\n\r\n", 0, request{"GET", "/livez", "", 1}},
		{"Host with empty port", "GET /livez HTTP/1.1\r\nHost: h:\r\n\r\n", 0, request{"GET", "/livez", "", 1}},
		{"absolute form without path", "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", 0, request{"GET", "/", "", 1}},
		{"absolute form, query only", "GET http://h?verbose HTTP/1.1\r\nHost: h\r\n\r\n", 0, request{"GET", "/", "verbose", 1}},
		{"path is not decoded", "GET /live%7A HTTP/1.1\r\nHost: x\r\n\r\n", 0, request{"GET", "/live%7A", "", 1}},
		// Methods are case-sensitive (RFC 9110 §9.1): "get" is a method
		// of its own, which routing answers with 405 on a known path.
		{"lowercase method", "get /livez HTTP/1.1\r\nHost: x\r\n\r\n", 0, request{"get", "/livez", "", 1}},
		{"POST with a body", "POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 0, request{"POST", "/readyz", "", 1}},
		{"chunked body", "POST /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0, request{"POST", "/readyz", "", 1}},
		{"18-digit Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999\r\n\r\n", 0, request{"POST", "/", "", 1}},
		{"repeated equal Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 0, request{"POST", "/", "", 1}},
		{"header value with tab and obs-text", "GET / HTTP/1.1\r\nHost: x\r\nX: a\tb\xff\r\n\r\n", 0, request{"GET", "/", "", 1}},
		{"empty header value", "GET / HTTP/1.1\r\nHost: x\r\nX:\r\n\r\n", 0, request{"GET", "/", "", 1}},
		{"head of exactly maxHeaderBytes", fits, 0, request{"GET", "/livez", "", 1}},

		{"HTTP/2.0", "GET /livez HTTP/2.0\r\nHost: x\r\n\r\n", 505, request{}},
		{"HTTP/1.2", "GET /livez HTTP/1.2\r\nHost: x\r\n\r\n", 505, request{}},
		{"HTTP/0.9 (no version)", "GET /livez\r\n\r\n", 400, request{}},
		{"lowercase version", "GET /livez http/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"version with two digits", "GET /livez HTTP/1.10\r\nHost: x\r\n\r\n", 400, request{}},
		{"two spaces", "GET  /livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"tab separator", "GET\t/livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"trailing space", "GET /livez HTTP/1.1 \r\nHost: x\r\n\r\n", 400, request{}},
		{"space in target", "GET /li vez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"empty method", " /livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"method not a token", "G(T /livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"asterisk form", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"authority form", "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"relative target", "GET livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"absolute form without host", "GET http:///livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"other scheme", "GET ftp://h/livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"fragment", "GET /livez#x HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"control in target", "GET /livez\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"non-ASCII target", "GET /livéz HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"missing Host", "GET /livez HTTP/1.1\r\n\r\n", 400, request{}},
		{"two Hosts", "GET /livez HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", 400, request{}},
		{"two Hosts in HTTP/1.0", "GET /livez HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400, request{}},
		{"invalid Host", "GET /livez HTTP/1.1\r\nHost: x/y\r\n\r\n", 400, request{}},
		{"Host with userinfo", "GET /livez HTTP/1.1\r\nHost: u@x\r\n\r\n", 400, request{}},
		{"Host with a bad port", "GET /livez HTTP/1.1\r\nHost: x:ab\r\n\r\n", 400, request{}},
		{"Host with a bad IPv6 literal", "GET /livez HTTP/1.1\r\nHost: [zz]:9000\r\n\r\n", 400, request{}},
		{"Host IPv6 unclosed", "GET /livez HTTP/1.1\r\nHost: [::1:9000\r\n\r\n", 400, request{}},
		{"absolute form, bad host", "GET http://h|x/livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"absolute form, percent in host", "GET http://h%41/livez HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"absolute form, userinfo", "GET http://u@h/livez HTTP/1.1\r\nHost: h\r\n\r\n", 400, request{}},
		{"absolute form, bad port", "GET http://h:x/livez HTTP/1.1\r\nHost: h\r\n\r\n", 400, request{}},
		{"header without colon", "GET /livez HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400, request{}},
		{"space before colon", "GET /livez HTTP/1.1\r\nHost : x\r\n\r\n", 400, request{}},
		{"obsolete line folding", "GET /livez HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400, request{}},
		{"empty field name", "GET /livez HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400, request{}},
		// The two above also lack a Host; these have one, so that only
		// the field name can be what is refused.
		{"space before colon, Host present", "GET /livez HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n", 400, request{}},
		{"obsolete line folding holding a colon", "GET /livez HTTP/1.1\r\nHost: x\r\nX: a\r\n b: c\r\n\r\n", 400, request{}},
		{"field name not a token", "GET /livez HTTP/1.1\r\nHost: x\r\nX(y): z\r\n\r\n", 400, request{}},
		{"NUL in value", "GET /livez HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400, request{}},
		{"DEL in value", "GET /livez HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", 400, request{}},
		{"DEL in target", "GET /livez\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"Host with an IPv6 zone", "GET /livez HTTP/1.1\r\nHost: [fe80::1%25eth0]:9000\r\n\r\n", 400, request{}},
		{"bare CR in request line", "GET /livez\rX HTTP/1.1\r\nHost: x\r\n\r\n", 400, request{}},
		{"bare CR in header", "GET /livez HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400, request{}},
		{"negative Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, request{}},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", 400, request{}},
		{"huge Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, request{}},
		// 19 digits can exceed an int64 (net/http refuses this one); 18
		// never do.
		{"19-digit Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999999999999\r\n\r\n", 400, request{}},
		{"conflicting Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, request{}},
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, request{}},
		{"head too large", big, 431, request{}},
		{"head of maxHeaderBytes+1", strings.Replace(fits, "X-Fill: ", "X-Fill: a", 1), 431, request{}},

		{"nothing", "", -1, request{}},
		{"only empty lines", "\r\n\r\n\r\n", -1, request{}},
		{"head not finished", "GET /livez HTTP/1.1\r\nHost: x\r\n", -1, request{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One read, then a byte per read: the head scanner must
			// find the same end either way.
			for _, read := range []func(io.Reader) io.Reader{identity, iotest.OneByteReader} {
				req, code, err := parseHead([]byte(tc.in), read)
				if code != tc.code {
					t.Fatalf("code %d (%v), want %d", code, err, tc.code)
				}
				if req != tc.want {
					t.Errorf("parsed %+v, want %+v", req, tc.want)
				}
				if code > 0 && (err == nil || err.Error() == "") {
					t.Errorf("code %d without a message", code)
				}
			}
		})
	}
}

func TestReadHeadErrors(t *testing.T) {
	buf := make([]byte, maxHeaderBytes)
	if _, err := readHead(strings.NewReader(""), buf); err != io.EOF {
		t.Errorf("empty connection: %v, want io.EOF", err)
	}
	if _, err := readHead(strings.NewReader("GET / HTTP/1.1\r\n"), buf); err != io.ErrUnexpectedEOF {
		t.Errorf("cut head: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := readHead(strings.NewReader("G"), buf); err != io.ErrUnexpectedEOF {
		t.Errorf("head cut after one byte: %v, want io.ErrUnexpectedEOF", err)
	}
	boom := errors.New("boom")
	if _, err := readHead(iotest.ErrReader(boom), buf); err != boom {
		t.Errorf("read error: %v, want %v", err, boom)
	}
	// A head that ends in the same read as an error is still a head.
	head, err := readHead(iotest.DataErrReader(strings.NewReader("GET / HTTP/1.0\r\n\r\n")), buf)
	if err != nil || string(head) != "GET / HTTP/1.0\r\n\r\n" {
		t.Errorf("head with EOF: %q, %v", head, err)
	}
	// Bytes after the head (a body, a pipelined request) are not part of
	// it.
	head, err = readHead(strings.NewReader("GET / HTTP/1.0\n\nGET /x HTTP/1.0\n\n"), buf)
	if err != nil || string(head) != "GET / HTTP/1.0\n\n" {
		t.Errorf("pipelined: %q, %v", head, err)
	}
}

func TestQueryHas(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  bool
	}{
		{"verbose", true},
		{"verbose=", true},
		{"verbose=1", true},
		{"x=1&verbose", true},
		{"verbose&x=1", true},
		{"verb%6Fse", true},
		{"verbose+", false},
		{"", false},
		{"verbosee", false},
		{"xverbose", false},
		{"v=verbose", false},
		{"verbose;x", false}, // net/url skips pairs holding ';'
		{"verbose=1;x", false},
		{"x=1&verbose=a;b", false},
		{"verb%zzose&x", false},
		{"verbose%", false},
		{"verbose%6", false},
		{"&&verbose&&", true},
	} {
		if got := queryHas(tc.query, "verbose"); got != tc.want {
			t.Errorf("queryHas(%q) = %v, want %v", tc.query, got, tc.want)
		}
		// The semantics are net/url's: check the table against it.
		if v, _ := url.ParseQuery(tc.query); v.Has("verbose") != tc.want {
			t.Errorf("table: net/url says %q has verbose: %v", tc.query, v.Has("verbose"))
		}
	}
}

// TestAppendReply checks the answer bytes against net/http's parser, an
// independent implementation.
func TestAppendReply(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	rp := textReply(statusMethodNotAllowed, "method not allowed")
	rp.allow = "GET, HEAD"
	b := appendReply(nil, rp, false, now)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatalf("ReadResponse(%q): %v", b, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Date":                   "Wed, 04 Mar 2026 04:06:07 GMT",
		"Content-Type":           "text/plain; charset=utf-8",
		"Content-Length":         "19",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Allow":                  "GET, HEAD",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	// ReadResponse turns "Connection: close" into resp.Close.
	if resp.Status != "405 Method Not Allowed" || string(body) != "method not allowed\n" || !resp.Close ||
		!bytes.Contains(b, []byte("\r\nConnection: close\r\n")) {
		t.Errorf("got %q %q close=%v", resp.Status, body, resp.Close)
	}

	head := appendReply(nil, bodyReply(statusOK, "application/json", []byte("{}\n")), true, now)
	if !bytes.HasSuffix(head, []byte("Content-Length: 3\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n")) {
		t.Errorf("HEAD answer %q: want the GET headers and no body", head)
	}
	for _, code := range []int{200, 400, 404, 405, 431, 500, 503, 505} {
		if r := reasonPhrase(code); strings.HasPrefix(r, "Status ") || r != http.StatusText(code) {
			t.Errorf("reasonPhrase(%d) = %q, want %q", code, r, http.StatusText(code))
		}
	}
}

func TestReadStatus(t *testing.T) {
	long := strings.Repeat("x", 2*maxErrorBody)
	for _, tc := range []struct {
		name, in        string
		code            int
		text, firstLine string
		err             string
	}{
		{name: "ok", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", code: 200, text: "200 OK"},
		{name: "ok without body framing", in: "HTTP/1.0 200 OK\r\n\r\n", code: 200, text: "200 OK"},
		{name: "redirect", in: "HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", code: 302, text: "302 Found"},
		// Only a failure's body is read: a 3xx body (which a server that
		// keeps the connection open may never end) is not waited for.
		{name: "redirect with a body", in: "HTTP/1.1 301 Moved\r\nContent-Length: 5\r\n\r\nmoved", code: 301, text: "301 Moved"},
		{name: "LF only", in: "HTTP/1.1 503 Service Unavailable\nContent-Length: 9\n\nfirst\nsec", code: 503, text: "503 Service Unavailable", firstLine: "first"},
		{name: "no reason", in: "HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n", code: 503, text: "503"},
		{name: "empty reason", in: "HTTP/1.1 503 \r\n\r\n", code: 503, text: "503"},
		{name: "skips empty lines", in: "HTTP/1.1 500 Oops\r\nContent-Length: 9\r\n\r\n\n \n  why \n", code: 500, text: "500 Oops", firstLine: "why"},
		{name: "Content-Length bounds the body", in: "HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nabcdef", code: 500, text: "500 Oops", firstLine: "ab"},
		{name: "body until EOF", in: "HTTP/1.0 500 Oops\r\n\r\nboom\nmore", code: 500, text: "500 Oops", firstLine: "boom"},
		{name: "chunked", in: "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n7;ext=1\r\nchunked\r\n0\r\n\r\n", code: 500, text: "500 Oops", firstLine: "chunked"},
		{name: "bad chunk size", in: "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", code: 500, text: "500 Oops"},
		{name: "body bounded", in: "HTTP/1.1 500 Oops\r\n\r\n" + long, code: 500, text: "500 Oops", firstLine: long[:maxErrorBody]},
		{name: "control characters dropped", in: "HTTP/1.1 500 O\x1bops\r\nContent-Length: 6\r\n\r\na\x1b[2Jb", code: 500, text: "500 Oops", firstLine: "a[2Jb"},

		{name: "empty", in: "", err: "status line: unexpected EOF"},
		{name: "not HTTP", in: "SSH-2.0-OpenSSH\r\n\r\n", err: "malformed status line"},
		{name: "HTTP/2", in: "HTTP/2 200\r\n\r\n", err: "malformed status line"},
		{name: "code not a number", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: "malformed status code"},
		{name: "code too short", in: "HTTP/1.1 20 OK\r\n\r\n", err: "malformed status line"},
		{name: "code below 100", in: "HTTP/1.1 099 OK\r\n\r\n", err: "malformed status code"},
		{name: "cut in headers", in: "HTTP/1.1 200 OK\r\nX: y\r\n", err: "header: unexpected EOF"},
		{name: "long status line", in: "HTTP/1.1 200 " + strings.Repeat("a", maxResponseLine) + "\r\n\r\n", err: "status line: line longer than"},
		{name: "long header line", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxResponseLine) + "\r\n\r\n", err: "header: line longer than"},
		{name: "too many headers", in: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Header: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n", err: "header larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := readStatus(bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(tc.in)), maxResponseLine))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.code != tc.code || st.text != tc.text || st.firstLine != tc.firstLine {
				t.Errorf("got %d %q %q, want %d %q %q", st.code, st.text, st.firstLine, tc.code, tc.text, tc.firstLine)
			}
		})
	}
}

// FuzzParseRequest feeds arbitrary bytes to the request-head reader and
// parser and checks that they never panic, that the answer does not depend on
// how the bytes were split into reads, and that whatever is accepted is a
// request net/http, an independent implementation, reads the same way.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /readyz?verbose HTTP/1.0\n\n",
		"HEAD http://h:9000/metrics HTTP/1.1\r\nHost: h:9000\r\nUser-Agent: kube-probe/1.31\r\nAccept: */*\r\nConnection: close\r\n\r\n",
		"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\r\nget /livez HTTP/2.0\r\n\r\n",
		"GET /livez HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
		"GET /x\rY HTTP/1.1\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET http://[::1]:9000/a%20b?c=%zz HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n",
		"GET http://user@h:x/ HTTP/1.1\r\nHost: h%41\r\n\r\n",
		"GET http://h.example:99999?q HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, code, err := parseHead(data, identity)
		req2, code2, _ := parseHead(data, iotest.OneByteReader)
		if code != code2 || req != req2 {
			t.Fatalf("one read: %d %+v; a byte per read: %d %+v", code, req, code2, req2)
		}
		switch code {
		case 0:
		case -1, statusBadRequest, statusHeaderTooLarge, statusVersionUnsupported:
			return
		default:
			t.Fatalf("code %d (%v)", code, err)
		}
		if !isToken(req.method) || req.minor != 0 && req.minor != 1 ||
			!strings.HasPrefix(req.path, "/") || strings.ContainsAny(req.path, "?# \r\n") ||
			strings.ContainsAny(req.query, "# \r\n") {
			t.Fatalf("accepted %q as %+v", data, req)
		}

		// net/http does not skip empty lines before the request line.
		hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(bytes.TrimLeft(data, "\r\n"))))
		if err != nil {
			// net/http refuses some requests that are harmless to us,
			// since we neither read a body nor decode the path.
			if strings.Contains(err.Error(), "transfer encoding") || strings.Contains(err.Error(), "invalid URL escape") {
				return
			}
			t.Fatalf("accepted %q as %+v, net/http refuses it: %v", data, req, err)
		}
		path, err := url.PathUnescape(req.path)
		if hr.URL.Path == "" {
			hr.URL.Path = "/" // absolute form without a path
		}
		if hr.Method != req.method || err != nil || hr.URL.Path != path || hr.URL.RawQuery != req.query || hr.ProtoMinor != req.minor {
			t.Fatalf("%q: we read %+v, net/http %s %q %q 1.%d", data, req, hr.Method, hr.URL.Path, hr.URL.RawQuery, hr.ProtoMinor)
		}
	})
}

// FuzzReadStatus checks that the client half never panics on what a server
// sends and that the codes it accepts are three digits.
func FuzzReadStatus(f *testing.F) {
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nno\nx"))
	f.Add([]byte("HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := readStatus(bufio.NewReaderSize(bytes.NewReader(data), maxResponseLine))
		if err != nil {
			return
		}
		if st.code < 100 || st.code > 999 || len(st.firstLine) > maxErrorBody || strings.ContainsAny(st.text+st.firstLine, "\r\n") {
			t.Fatalf("%q read as %+v", data, st)
		}
	})
}

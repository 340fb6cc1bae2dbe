package nodeipc

import (
	"net"
	"testing"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// The first worker to ask for a port binds it (Created); the next gets the
// same socket; a port held by another process comes back as EADDRINUSE.
func TestShareCreatesOnceAndReportsTheErrno(t *testing.T) {
	reg := sockets.NewRegistry(4, nil)
	defer reg.Close()
	share := Share(reg, "app", zerolog.Nop())
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()

	q := Query{Network: "tcp", Address: "127.0.0.1", Family: 4, Port: port, FD: -1}
	first := share(q)
	second := share(q)
	if first.Errno != 0 || first.File == nil || !first.Created {
		t.Fatalf("first query: %+v, want a socket bound by it", first)
	}
	if second.Errno != 0 || second.Created || second.ID != first.ID {
		t.Fatalf("second query: %+v, want the first one's socket (id %d), not created", second, first.ID)
	}
	q.Port = held.Addr().(*net.TCPAddr).Port
	if r := share(q); r.Errno.Error() != "address already in use" || r.Created {
		t.Fatalf("query of a held port: %+v, want EADDRINUSE", r)
	}
}

package health

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gm2-init/gm2-init/internal/echo"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// Exit statuses of `gm2-init healthcheck`: what Docker's HEALTHCHECK
// expects (0 healthy, 1 unhealthy), and 2 for a command line that cannot
// be right, as for gm2-init itself.
const (
	CheckHealthy   = 0
	CheckUnhealthy = 1
	CheckUsage     = 2
)

// CheckCommand runs `gm2-init healthcheck [PATH [ADDR]]`: a GET of PATH
// (default /readyz) on ADDR, else on addr — GM2_HEALTH_ADDR as set, or
// --health-addr's default, which main passes. Both are read as the server
// reads its address (sockets.ParseHealthAddr): blanks around it go, a bare
// port is every interface, off means the health endpoints are off, which
// leaves nothing to check (a usage error, as is an address the server
// would refuse, an empty one included). It writes one
// line to stderr when the answer is not healthy or the command line is
// wrong, and returns the exit status. An image that sets --health-addr as a
// flag passes ADDR.
func CheckCommand(args []string, addr string, stderr io.Writer) int {
	const usage = "usage: gm2-init healthcheck [PATH [ADDR]] (PATH defaults to /readyz, ADDR to GM2_HEALTH_ADDR, else :9000)"
	if len(args) > 2 {
		fmt.Fprintln(stderr, "gm2-init healthcheck: "+usage)
		return CheckUsage
	}
	path := "/readyz"
	if len(args) > 0 {
		path = args[0]
	}
	if !strings.HasPrefix(path, "/") {
		fmt.Fprintf(stderr, "gm2-init healthcheck: PATH %s must start with / (/livez or /readyz); %s\n", echo.Quote(path), usage)
		return CheckUsage
	}
	source := "GM2_HEALTH_ADDR"
	if len(args) > 1 {
		addr, source = args[1], "ADDR"
	}
	target, err := sockets.ParseHealthAddr(addr)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "gm2-init healthcheck: %s: invalid value %s: %v\n", source, echo.Quote(addr), err)
		return CheckUsage
	case target == "":
		fmt.Fprintf(stderr, "gm2-init healthcheck: the health endpoints are off (%s %s): nothing to check; give ADDR: gm2-init healthcheck [PATH [ADDR]]\n",
			source, echo.Quote(addr))
		return CheckUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Check(ctx, target, path, 3*time.Second); err != nil {
		fmt.Fprintln(stderr, "gm2-init healthcheck: "+echo.Line(err.Error()))
		return CheckUnhealthy
	}
	return CheckHealthy
}

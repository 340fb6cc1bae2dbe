package sockets

import (
	"errors"
	"strings"
)

// HealthAddrAccepted lists the forms ParseHealthAddr takes, for messages.
const HealthAddrAccepted = "accepted: off, :PORT, HOST:PORT or [IPv6]:PORT with HOST an IP address or localhost and PORT 0–65535"

// ParseHealthAddr reads the health endpoints' address (--health-addr,
// GM2_HEALTH_ADDR) the one way both its users need: the server that binds
// it and `gm2-init healthcheck` that probes it. Blanks around it go; ""
// and off (any case) mean off, returned as ""; anything else must be an
// address StdlibTCP takes, returned trimmed. The error is
// HealthAddrAccepted.
func ParseHealthAddr(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "off") {
		return "", nil
	}
	if _, err := StdlibTCP(v); err != nil {
		return "", errors.New(HealthAddrAccepted)
	}
	return v, nil
}

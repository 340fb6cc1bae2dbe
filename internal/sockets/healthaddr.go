package sockets

import (
	"errors"
	"strings"
)

// HealthAddrAccepted lists the forms ParseHealthAddr takes, for messages.
const HealthAddrAccepted = "accepted: off, PORT, :PORT, HOST:PORT or [IPv6]:PORT with HOST an IP address or localhost and PORT 0–65535"

// ParseHealthAddr reads the health endpoints' address (--health-addr,
// GM2_HEALTH_ADDR) the one way both its users need: the server that binds
// it and `gm2-init healthcheck` that probes it. Blanks around it go; off
// (any case) means off, returned as ""; a bare port is every interface, as
// for --listen (bareport: "9000" is ":9000"); anything else must be an
// address StdlibTCP takes, returned trimmed. An empty value is refused, as
// the empty value of every other option with a default is: GM2_HEALTH_ADDR=
// is a forgotten value far more often than a way to say off. The error is
// HealthAddrAccepted.
func ParseHealthAddr(v string) (string, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "off") {
		return "", nil
	}
	v = bareport(v)
	if _, err := StdlibTCP(v); v == "" || err != nil {
		return "", errors.New(HealthAddrAccepted)
	}
	return v, nil
}

package notify

import (
	"encoding/base32"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// randomToken returns 128 random bits from the kernel as 26 lowercase
// base32 characters (letters and digits: fine in a file name and in an
// abstract socket name).
//
// Why not crypto/rand: it is the only reason the binary would link Go's FIPS
// crypto module (about 160 KB and 31 packages) for 16 bytes that getrandom(2)
// gives directly. Without flags getrandom blocks only until the kernel's pool
// is initialised once after boot, which has long happened by the time a
// container starts.
func randomToken() (string, error) {
	var b [16]byte
	for n := 0; n < len(b); {
		m, err := unix.Getrandom(b[n:], 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("getrandom: %w", err)
		}
		n += m
	}
	return tokenEncoding.EncodeToString(b[:]), nil
}

var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

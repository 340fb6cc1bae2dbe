//go:build race

package e2e

// raceEnabled: `go test -race` also builds the gm2-init under test with the
// race detector, so that data races in the real binary fail the run.
const raceEnabled = true

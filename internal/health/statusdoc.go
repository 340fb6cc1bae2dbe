package health

import (
	"context"
	"fmt"
	"time"

	"github.com/gm2-init/gm2-init/internal/status"
)

// StatusDocument builds the JSON document of GET /status: the supervisor's
// snapshot, rendered by buildStatusView with the workers' usage read from
// /proc at the time of the request (usage.go). The health server answers
// /status with it and the control socket answers `gm2-init status` with the
// same one (main hands one StatusDocument to both), so that the two cannot
// differ — and the usage is read whether or not the health endpoints are
// on. It is safe for concurrent use; reads of /proc are shared between its
// callers as usageReader describes.
type StatusDocument struct {
	snapshot func() *status.Snapshot
	usage    *usageReader
	now      func() time.Time
}

// NewStatusDocument returns the /status document of the snapshots that
// snapshot returns, reading the workers' usage under procRoot ("/proc").
func NewStatusDocument(snapshot func() *status.Snapshot, procRoot string) *StatusDocument {
	return &StatusDocument{
		snapshot: snapshot,
		usage:    newUsageReader(procRoot, usageTimeout, usageMaxAge),
		now:      time.Now,
	}
}

// Body returns the document as GET /status serves it (indented JSON and a
// final newline). ctx bounds the read of the workers' usage, which is
// bounded by usageTimeout anyway; a usage figure not read in time is
// reported in the document (usage_error), not as an error.
func (d *StatusDocument) Body(ctx context.Context) ([]byte, error) {
	snap := d.snapshot()
	if snap == nil {
		// A source that broke its promise of never returning nil: an
		// empty snapshot reads as "not ready", the least harmful answer.
		snap = &status.Snapshot{}
	}
	body, err := statusBody(snap, d.now(), d.usage.read(ctx, snap))
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	return body, nil
}

func (s *Server) handleStatus(ctx context.Context) reply {
	body, err := s.status.Body(ctx)
	if err != nil {
		// Only an unencodable value could get here (none is in the
		// view); say so rather than send half a document.
		s.log.Error().Err(err).Msg("encode /status")
		return textReply(statusInternalError, err.Error())
	}
	return bodyReply(statusOK, "application/json", body)
}

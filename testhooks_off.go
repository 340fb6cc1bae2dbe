//go:build !gm2testhooks

package main

import (
	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/spawn"
)

// startTestHooks does nothing in a normal build (see testhooks_on.go).
func startTestHooks(*spawn.Supervisor, zerolog.Logger) func() { return func() {} }

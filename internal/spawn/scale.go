package spawn

import (
	"errors"
	"fmt"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/status"
)

// scale sets app a to n instances (SIGTTIN/SIGTTOU: one more, one less;
// `gm2-init scale APP N`). New slots start at once; removed slots are the
// highest, stopped gracefully, and never the last one that works.
func (s *Supervisor) scale(a *app, n int, why string) error {
	cur := a.instances()
	switch {
	case s.down.active:
		return errors.New("gm2-init is shutting down")
	case a.spec.ExecMode == appspec.Fork && n != 1:
		return fmt.Errorf("app %s runs in fork mode: exactly one instance", a.name)
	case n < 1:
		return errors.New("one worker is the minimum")
	case n > cur && s.totalInstances()+n-cur > appspec.MaxWorkers:
		return fmt.Errorf("%d workers in all would pass the cap of %d", s.totalInstances()+n-cur, appspec.MaxWorkers)
	case n == cur:
		return nil
	case n < cur && !keepsAWorkingSlot(a, n):
		// Checked for the whole count before any slot goes: a refused
		// scale changes nothing.
		return errors.New("the other slots have errored or stopped")
	}
	for a.instances() < n {
		s.scaleUpOne(a)
	}
	for a.instances() > n {
		if err := s.scaleDownOne(a); err != nil {
			return err
		}
	}
	dir := "up"
	if n < cur {
		dir = "down"
	}
	s.log.Info().Str("app", a.name).Int("instances", a.instances()).Msg("scaled " + dir + " (" + why + ")")
	return nil
}

func (s *Supervisor) scaleUpOne(a *app) {
	// Take back a slot being removed before adding one, so that indices
	// stay contiguous.
	for _, sl := range a.slots {
		if sl.retiring {
			sl.retiring = false
			sl.state = status.Starting
			s.startCurrent(sl)
			return
		}
	}
	sl := &slot{app: a, index: len(a.slots), state: status.Starting}
	a.slots = append(a.slots, sl)
	s.startCurrent(sl)
}

// keepsAWorkingSlot tells whether, of a's slots, the n that a scale-down
// keeps (the lowest) hold one that has not errored or stopped: the last
// one that works is never removed, or gm2-init would exit.
func keepsAWorkingSlot(a *app, n int) bool {
	kept := 0
	for _, sl := range a.slots {
		if sl.retiring {
			continue
		}
		if kept++; kept > n {
			return false
		}
		if sl.state != status.Errored && sl.state != status.Stopped {
			return true
		}
	}
	return false
}

func (s *Supervisor) scaleDownOne(a *app) error {
	var sl *slot
	for i := len(a.slots) - 1; i >= 0; i-- {
		if !a.slots[i].retiring {
			sl = a.slots[i]
			break
		}
	}
	// Never the last one that works: the rest errored, and gm2-init would
	// exit.
	working := false
	for _, o := range a.slots {
		if o != sl && !o.retiring && o.state != status.Errored && o.state != status.Stopped {
			working = true
		}
	}
	if !working {
		return errors.New("the other slots have errored or stopped")
	}
	sl.retiring = true
	cancelRestart(sl)
	stopTimer(&sl.replaceRetry)
	sl.replacing = ""
	for _, w := range []*worker{sl.candidate, sl.current} {
		if w != nil {
			s.stop(w, "scaled down")
		}
	}
	a.dropRetired()
	s.pumpReload(a) // finishes a pass if this slot was its last
	return nil
}

// dropRetired drops retired slots from the end of the list once they hold
// no process.
func (a *app) dropRetired() {
	for n := len(a.slots); n > 0; n-- {
		sl := a.slots[n-1]
		if !sl.retiring || sl.current != nil || sl.candidate != nil || len(sl.draining) > 0 {
			return
		}
		a.slots = a.slots[:n-1]
	}
}

// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/lastgood"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// DefaultStateDir is where the last good set is kept when systemd does not
// say ($STATE_DIRECTORY, from the unit's StateDirectory=).
const DefaultStateDir = "/var/lib/net-tc-filter"

// loadAtStart is the start's load of the configuration set. When the files
// are invalid (syntax, a bad range, an unsafe file, a file that never
// stops changing), a firewall that refuses to start protects nothing:
// after a reboot nothing is pinned, and the host would run unfiltered
// until someone fixed the files. So the last set that went live is
// enforced instead, the service reports itself degraded with both facts,
// and the watcher's next reload of valid files takes over as usual. Only
// with no last good set either does the start fail.
//
// The same holds when a filter is still pinned (a crash, a restart): the
// pinned policy is the last one that went live, which is the last good set
// unless saving it failed, and a daemon that enforces it, follows
// interfaces and reports is better than a restart loop that leaves the
// pins alone until systemd gives up.
func (s *Service) loadAtStart() (*config.Config, *policy.Policy, error) {
	cfg, p, err := loadSettled(s.opts.ConfigPath, s.opts.Resolver, &s.parsed, nil)
	if err == nil || s.opts.StateDir == "" {
		return cfg, p, err
	}
	set, cfg, p, lgErr := s.loadLastGood()
	if lgErr != nil {
		return nil, nil, fmt.Errorf("%w\nno last good set to enforce instead: %v", err, lgErr)
	}
	s.fallback = "the last good set of " + set.Saved.Local().Format("2006-01-02 15:04:05 MST")
	why := failure(err, s.fallback)
	why.line = "the configuration files are invalid: " + why.line
	s.log.Error(fmt.Sprintf("configuration invalid; enforcing the last good set of %s (%s) instead, until the files are valid:\n%v",
		set.Saved.Local().Format(time.RFC3339), set.Dir, err), "problems", why.problems, "last_good", set.Dir)
	s.setError(why)
	return cfg, p, nil
}

// loadLastGood loads the last good set like any configuration set, from
// where it is saved: the loader checks its files as it checks the
// originals, and a user or group name in it is resolved again (one that no
// longer resolves matches no one).
func (s *Service) loadLastGood() (lastgood.Set, *config.Config, *policy.Policy, error) {
	store, err := lastgood.Open(s.opts.StateDir)
	if err != nil {
		return lastgood.Set{}, nil, nil, err
	}
	set, err := store.Latest(s.opts.ConfigPath)
	if err != nil {
		return lastgood.Set{}, nil, nil, err
	}
	cfg, p, err := load(set.Main, s.opts.Resolver, nil)
	if err != nil {
		return lastgood.Set{}, nil, nil, fmt.Errorf("the last good set in %s does not load:\n%w", set.Dir, err)
	}
	return set, cfg, p, nil
}

// saveLastGood keeps a set that has just gone live, loaded from the files
// (not re-applied: files may be broken by then), as the last good set. The
// files are read again to be copied, and the copy is saved only if its
// bytes are the ones the load parsed (cfg.Sums): a whole new version
// written between the load and the copy was never validated, and the
// watcher loads it next; meanwhile the set saved before stays. Nor is a
// copy saved while a file is open for writing or changed while it was
// copied.
//
// A set loaded from the state directory (the last good set itself,
// enforced at start) is not saved again. A failure is logged; the filter
// does not depend on it.
func (s *Service) saveLastGood(cfg *config.Config) {
	if s.opts.StateDir == "" {
		return
	}
	store, err := lastgood.Open(s.opts.StateDir)
	if err != nil {
		s.log.Error("the last good set is not saved; a start with invalid files will not be able to fall back on it", "err", err)
		return
	}
	if len(cfg.Files) > 0 && store.Contains(cfg.Files[0]) {
		return
	}
	before := stamps(s.opts.ConfigPath)
	set, saved, err := store.Save(s.opts.ConfigPath, cfg.Files, cfg.Sums, time.Now(), func(string) error {
		if !maps.Equal(before, stamps(s.opts.ConfigPath)) {
			return errors.New("the files changed while they were copied")
		}
		if w, _ := config.Writing(cfg.Files); w != "" {
			return fmt.Errorf("%s is open for writing", w)
		}
		return nil
	})
	switch {
	case err != nil:
		s.log.Warn("the last good set is not updated; the one saved before stays until the next reload", "err", err, "dir", store.Dir())
	case saved:
		s.log.Debug("saved as the last good set", "dir", set.Dir)
	}
}

// StateDir is the state directory systemd made for the unit
// ($STATE_DIRECTORY, the first of its list), else DefaultStateDir.
func StateDir() string {
	if dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); dir != "" {
		return dir
	}
	return DefaultStateDir
}

// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// A file written in place (cp, an editor without rename, `>`, a script
// writing in chunks) is empty or half-written until its writer closes it.
// A reload that read it then would apply a policy nobody wrote, maybe one
// without a protection, so a load counts only when:
//
//   - no file of the set is open for writing (the kernel's count of a
//     file's writers, see config.Writing): however slowly a file is
//     written, it is read only once closed. Where the kernel cannot tell
//     (a file system without leases), none of the set's files may have
//     changed for quietTime instead;
//   - no file of the set changed while it was read and for settleTime from
//     when reading began (a large set's own load time counts toward that
//     moment), which catches a writer that came and went meanwhile.
//
// The watcher adds a third: a file written in place is signalled only once
// the set's files have had no write for 2 s (watch.inPlaceQuiet), so that a
// writer that closes between its chunks (`>` then `>>`) is waited for too.
// One that pauses longer writes two versions; the first is applied like
// any other edit, and refused like any other if invalid.
const (
	settleTime  = 20 * time.Millisecond
	settleTries = 25
	// writeWait is how long a load waits for a writer to close a file of
	// the set before giving up, keeping the running policy. The watcher
	// holds its change until the writer closes, whatever it takes, so the
	// file is read then.
	writeWait = 2 * time.Second
	writePoll = 20 * time.Millisecond
	quietTime = time.Second
)

var (
	// errUnsettled is a load given up on because files kept changing.
	errUnsettled = errors.New("the configuration files kept changing while being read; the running policy stays until they are written")
	// errWriting is a load given up on because a file stayed open for writing.
	errWriting = errors.New("open for writing (a write is in progress); the running policy stays, and the set is read once the file is closed")
)

// loadSettled is load, repeated until the files stand still. prev is the
// policy compiled before (nil at a start): what it resolved of endpoints
// the cache hands out again is kept (policy.CompileAfter).
func loadSettled(path string, r policy.Resolver, cache *config.Cache, prev *policy.Policy) (*config.Config, *policy.Policy, error) {
	for range settleTries {
		if err := awaitWriters(path); err != nil {
			return nil, nil, err
		}
		before, began := stamps(path), time.Now()
		cfg, errs := cache.LoadPartial(path)
		// Changed while read (a file renamed into place after the
		// watcher's signal): read again at once, rather than first
		// compile a version that is not the one meant, which at a
		// million ranges takes as long as the reading.
		if !maps.Equal(before, stamps(path)) {
			continue
		}
		cfg, p, err := compileLoaded(cfg, errs, r, prev)
		if err != nil {
			cfg, p = nil, nil // as load returns an invalid set
		}
		time.Sleep(settleTime - time.Since(began))
		if !maps.Equal(before, stamps(path)) {
			continue
		}
		// Opened for writing since, and not written yet: what was read is
		// whole, but the version being written is the one meant.
		if w, _ := config.Writing(config.SetPaths(path)); w != "" {
			continue
		}
		return cfg, p, err
	}
	return nil, nil, errUnsettled
}

// awaitWriters waits, up to writeWait, until no file of the set is open for
// writing, or, where that cannot be told, until none changed for quietTime.
func awaitWriters(path string) error {
	deadline := time.Now().Add(writeWait)
	for {
		files := config.SetPaths(path)
		w, err := config.Writing(files)
		wait := time.Duration(0)
		switch {
		case w != "":
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %w", w, errWriting)
			}
			wait = writePoll
		case errors.Is(err, config.ErrWriteUnknown):
			// A modification time in the future (a clock set back, touch
			// -d) says nothing about a writer: read it.
			if quiet := time.Since(newest(files)); quiet >= 0 && quiet < quietTime {
				if time.Now().After(deadline) {
					return errUnsettled
				}
				wait = min(quietTime-quiet, writePoll*5)
			}
		}
		if wait == 0 {
			return nil
		}
		time.Sleep(wait)
	}
}

// newest is the latest modification time of the files that exist.
func newest(files []string) time.Time {
	var t time.Time
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

type stamp struct {
	size, mtime int64
	ino         uint64
}

// stamps identifies the current contents of the main file and conf.d by
// their metadata (symbolic links followed: a ConfigMap swap shows as a new
// inode).
func stamps(path string) map[string]stamp {
	out := map[string]stamp{}
	add := func(p string) {
		fi, err := os.Stat(p)
		if err != nil {
			return
		}
		st := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.ino = sys.Ino
		}
		out[p] = st
	}
	add(path)
	dir := config.DropInDir(path)
	add(dir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		add(filepath.Join(dir, e.Name()))
	}
	return out
}

package daemon

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// A file written in place (cp, an editor without rename, `>`) is empty or
// half-written for a moment. A reload that read it then would apply a
// policy nobody wrote, maybe one without a protection. So a load counts
// only when no file of the set changed while it was read and for
// settleTime from when reading began: a large set's own load time counts
// toward that moment.
const (
	settleTime  = 20 * time.Millisecond
	settleTries = 25
)

// errUnsettled is a reload given up on because files kept changing.
var errUnsettled = errors.New("the configuration files kept changing while being read; the running policy stays until they are written")

// loadSettled is load, repeated until the files stand still.
func loadSettled(path string, r policy.Resolver, cache *config.Cache) (*config.Config, *policy.Policy, error) {
	for range settleTries {
		before, began := stamps(path), time.Now()
		cfg, p, err := load(path, r, cache)
		time.Sleep(settleTime - time.Since(began))
		if maps.Equal(before, stamps(path)) {
			return cfg, p, err
		}
	}
	return nil, nil, errUnsettled
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

// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Detach removes the filter from every interface and deletes the pins.
func (f *Filter) Detach() error {
	var errs []error
	for _, a := range f.attached {
		if err := f.detach(a); err != nil {
			errs = append(errs, err)
		}
	}
	if err := f.releaseAdopted(); err != nil {
		errs = append(errs, err)
	}
	if err := removeClsactFilters(f.objs.NtfClsact); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, f.Close(), removePinDir(f.opts.PinDir))
	return errors.Join(errs...)
}

// Remove detaches whatever an earlier run left pinned in pinDir, without
// loading the program: the `detach` command.
func Remove(pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	if _, err := os.Stat(pinDir); errors.Is(err, os.ErrNotExist) {
		return removeClsactFilters(nil)
	}
	var errs []error
	paths, _ := filepath.Glob(filepath.Join(pinDir, linkPrefix+"*"))
	for _, p := range paths {
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("open pinned link %s: %w", p, err))
			continue
		}
		l.Unpin()
		l.Close()
	}
	owned, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, filterMapNtfClsact), nil)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := removeClsactFilters(owned); err != nil {
		errs = append(errs, err)
	}
	if owned != nil {
		owned.Close()
	}
	if err := removePinDir(pinDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removePinDir removes the pins and then the directory. Under the shipped
// unit the directory is the one writable mount in a read-only /sys/fs/bpf
// (ReadWritePaths=): it cannot go, and an empty directory pins nothing.
func removePinDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EROFS) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

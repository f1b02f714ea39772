// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"path"
	"strings"
)

// cgroupNameMax is NAME_MAX: the longest name of a cgroup directory, and
// what the kernel program compares of one (NTF_CG_NAME in bpf/filter.h).
const cgroupNameMax = 255

// UnitTypes are the unit types that have a cgroup of their own: the only
// ones unit: can name (a .target or .timer runs no process).
var UnitTypes = []string{"service", "scope", "slice", "socket", "mount", "swap"}

// CheckUnitName refuses what systemd would refuse as a unit name
// (unit_name_is_valid: at most 255 bytes of [A-Za-z0-9:_.\-@\\], a type
// suffix) and the unit types that have no cgroup; a template
// ("foo@.service") names no unit that runs, only its instances do.
func CheckUnitName(name string) error {
	dot := strings.LastIndexByte(name, '.')
	switch {
	case name == "":
		return fmt.Errorf("empty unit name; write unit:NAME, like unit:amazon-ssm-agent.service")
	case len(name) > cgroupNameMax:
		return fmt.Errorf("unit name %q is %d bytes long; systemd allows at most %d", name, len(name), cgroupNameMax)
	case strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":_.-@\\", r))
	}):
		return fmt.Errorf("unit name %q has characters systemd does not allow in unit names (letters, digits and \":_.-@\\\" only; systemd-escape makes others)", name)
	case dot <= 0:
		return fmt.Errorf("unit name %q has no type suffix (.%s)", name, strings.Join(UnitTypes, ", ."))
	}
	suffix := name[dot+1:]
	known := false
	for _, t := range UnitTypes {
		known = known || t == suffix
	}
	switch {
	case !known:
		return fmt.Errorf("unit name %q: a .%s unit has no cgroup of its own; name one of type .%s", name, suffix, strings.Join(UnitTypes, ", ."))
	case strings.HasSuffix(name[:dot], "@"):
		return fmt.Errorf("unit name %q is a template; name its instances (%s)", name, name[:dot]+"INSTANCE."+suffix)
	case strings.HasPrefix(name, "@"):
		return fmt.Errorf("unit name %q starts with '@'", name)
	case suffix == "slice" && name != "-.slice" && (strings.HasPrefix(name, "-") || strings.Contains(name[:dot], "--") || strings.HasSuffix(name[:dot], "-")):
		// slice_build_parent_path would refuse it: "-" separates the
		// slices of its path.
		return fmt.Errorf("slice name %q has an empty part between dashes", name)
	}
	return nil
}

// CheckCgroupPath refuses a cgroup: path that is not the clean absolute
// path of a cgroup v2 directory below the cgroup2 mount.
func CheckCgroupPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty cgroup path; write cgroup:/PATH below the cgroup2 mount, like cgroup:/system.slice/foo.service")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("cgroup path %q must be absolute: /%s (relative to the cgroup2 mount)", p, p)
	case path.Clean(p) != p:
		return fmt.Errorf("cgroup path %q must be clean: write %q", p, path.Clean(p))
	case !isPrintable(p):
		return fmt.Errorf("cgroup path %q contains unprintable characters", p)
	}
	for _, name := range strings.Split(p, "/") {
		if len(name) > cgroupNameMax {
			return fmt.Errorf("cgroup path %q: %q is %d bytes long; a directory name has at most %d", p, name, len(name), cgroupNameMax)
		}
	}
	return nil
}

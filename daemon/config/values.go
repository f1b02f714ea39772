// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"unicode"
)

// ifNameMax is the kernel's IFNAMSIZ less the terminating NUL.
const ifNameMax = 15

// maxUID is the largest uid an allow list may name: (uid_t)-1 means "no
// uid" to the kernel (chown's "leave unchanged"), so it can never own
// anything, and UnknownUID is taken.
const maxUID = 1<<32 - 3

// UnknownUID is NTF_UID_UNKNOWN (bpf/filter.h): the owner the kernel
// program gives a socket whose owner it could not read, so that it
// matches no listed uid. Listing it would let exactly those packets pass.
const UnknownUID = 1<<32 - 2

// parseRange reads a CIDR prefix or a bare address (a one-address prefix).
// Prefixes must be written masked: "10.0.0.1/8" is far more likely a typo
// for a host than a wish for the whole /8, so it is refused, not guessed.
// IPv4-mapped IPv6 prefixes are stored as IPv4 because the filter judges
// mapped destinations as IPv4 (SPEC §1 rule 5).
func parseRange(s string) (netip.Prefix, error) {
	if i := strings.IndexByte(s, '%'); i >= 0 {
		return netip.Prefix{}, fmt.Errorf("range %q has a zone (%s); zones are not allowed — the interfaces are chosen by iface", s, s[i:])
	}
	p, err := prefixOf(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("range %s has host bits set; did you mean %s?", s, m)
	}
	return unmapPrefix(p), nil
}

func prefixOf(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("range %q is not a valid CIDR prefix (like 10.0.0.0/8 or fd00::/8)", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("range %q is not an IP address or CIDR prefix (like 169.254.169.254 or 10.0.0.0/8)", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96). A masked
// prefix shorter than /96 cannot look mapped; the check on n only keeps a
// bad call from panicking on a negative length.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() || p.Bits() < 96 {
		return p
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
}

// checkListen accepts "" (no metrics address) or IP:port with a port from
// 1 to 65535: "[::1]:9963" for IPv6. Host names are refused: the daemon
// starts before name resolution works, and a name can change what it
// means. Port 0 (any free port) is refused: nobody could scrape it.
func checkListen(s string) error {
	if s == "" {
		return nil
	}
	example := `(like "127.0.0.1:9963", "[::1]:9963", or "0.0.0.0:9963" for every IPv4 address)`
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("metrics.listen %q is not address:port %s", s, example)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		what := fmt.Sprintf("%q is not an IP address", host)
		if host == "" {
			what = "the address is missing"
		}
		return fmt.Errorf("metrics.listen %q: %s %s", s, what, example)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("metrics.listen %q: port %q is not a number from 1 to 65535", s, port)
	}
	return nil
}

// isGlob tells a pattern from a name by path.Match's metacharacters.
func isGlob(s string) bool {
	return strings.ContainsAny(s, `*?[\`)
}

// checkIface accepts what the kernel's dev_valid_name accepts, or a
// path.Match pattern.
func checkIface(s string) error {
	if isGlob(s) {
		return checkGlob(s)
	}
	return checkIfName(s)
}

func checkGlob(s string) error {
	if strings.ContainsFunc(s, func(r rune) bool { return r == '/' || unicode.IsSpace(r) }) {
		return fmt.Errorf("interface glob %q contains '/' or whitespace, which no interface name can", s)
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("interface glob %q is malformed: %v", s, err)
	}
	return nil
}

func checkIfName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("interface name is empty")
	case len(s) > ifNameMax:
		return fmt.Errorf("interface name %q is %d bytes long; Linux allows at most %d", s, len(s), ifNameMax)
	case s == "." || s == "..":
		return fmt.Errorf("interface name %q is not allowed by Linux", s)
	case strings.ContainsFunc(s, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) }):
		return fmt.Errorf("interface name %q contains '/', ':' or whitespace, which Linux does not allow", s)
	}
	return nil
}

// principalForms lists the accepted spellings, for messages.
const principalForms = `a user name, uid:N, group:NAME, unit:NAME, cgroup:PATH, "*" or unowned`

// parsePrincipal reads one allow entry without consulting NSS; names are
// resolved (and unknown ones reported) by the policy compiler.
func parsePrincipal(s string) (Principal, error) {
	p := Principal{Text: s}
	switch {
	case s == "*":
		p.Kind = PrincipalEveryone
	case s == "unowned":
		p.Kind = PrincipalUnowned
	case strings.HasPrefix(s, "uid:"):
		uid, err := parseUID(strings.TrimPrefix(s, "uid:"))
		if err != nil {
			return p, err
		}
		p.Kind, p.UID = PrincipalUID, uid
	case strings.HasPrefix(s, "group:"):
		name := strings.TrimPrefix(s, "group:")
		if err := checkAccountName("group", name); err != nil {
			return p, err
		}
		p.Kind = PrincipalGroup
	case strings.HasPrefix(s, "unit:"):
		name := strings.TrimPrefix(s, "unit:")
		if err := CheckUnitName(name); err != nil {
			return p, err
		}
		p.Kind = PrincipalUnit
	case strings.HasPrefix(s, "cgroup:"):
		dir := strings.TrimPrefix(s, "cgroup:")
		if err := CheckCgroupPath(dir); err != nil {
			return p, err
		}
		p.Kind = PrincipalCgroup
	case strings.Contains(s, ":"):
		return p, fmt.Errorf("allow entry %q has an unknown form; use %s", s, principalForms)
	default:
		if err := checkUserName(s); err != nil {
			return p, err
		}
		p.Kind = PrincipalUser
	}
	return p, nil
}

func parseUID(digits string) (uint32, error) {
	if digits == "" || strings.ContainsFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, fmt.Errorf("uid:%s is not a uid; write uid: followed by decimal digits, like uid:1005", digits)
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err == nil && n == UnknownUID {
		return 0, fmt.Errorf("uid %d is reserved: net-tc-filter uses it for an owner it could not read", n)
	}
	if err != nil || n > maxUID {
		return 0, fmt.Errorf("uid:%s is out of range; uids are 0..%d (4294967294 is reserved, 4294967295 means \"no uid\")", digits, uint32(maxUID))
	}
	return uint32(n), nil
}

// checkUserName also refuses all-digit names: whether "1005" means a user or
// a uid is exactly the ambiguity an access list must not have.
func checkUserName(s string) error {
	if err := checkAccountName("user", s); err != nil {
		return err
	}
	if strings.Trim(s, "0123456789") == "" {
		return fmt.Errorf("allow entry %q is all digits; write uid:%s for a uid", s, s)
	}
	return nil
}

func checkAccountName(kind, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s name; use %s", kind, principalForms)
	case strings.ContainsFunc(s, unicode.IsSpace):
		return fmt.Errorf("%s name %q contains whitespace", kind, s)
	case strings.Contains(s, ":"):
		return fmt.Errorf("%s name %q contains ':'", kind, s)
	case !isPrintable(s):
		return fmt.Errorf("%s name %q contains unprintable characters", kind, s)
	}
	return nil
}

// checkEndpointName keeps names usable in logs, D-Bus replies and messages.
func checkEndpointName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("endpoint name is empty")
	case strings.ContainsFunc(s, unicode.IsSpace):
		return fmt.Errorf("endpoint name %q contains whitespace", s)
	case !isPrintable(s):
		return fmt.Errorf("endpoint name %q contains unprintable characters", s)
	}
	return nil
}

func isPrintable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

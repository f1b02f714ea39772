// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// A hung NSS leaves at most n lookups behind through Limit: the next one
// fails at once, as a timeout, and once NSS answers the slots are free.
func TestLimit(t *testing.T) {
	const n = 2
	hung := newHungResolver(t, "carol", "group:ldap")
	r := Limit(hung, n)
	for _, name := range []string{"carol", "group:ldap"} {
		go func() {
			if g, ok := strings.CutPrefix(name, "group:"); ok {
				r.Group(g)
			} else {
				r.User(name)
			}
		}()
	}
	// Both hung lookups hold their slot once NSS was asked.
	for deadline := time.Now().Add(5 * time.Second); len(hung.askedNames()) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("asked %q", hung.askedNames())
		}
	}
	tests := []struct {
		name   string
		lookup func() error
	}{
		{"user", func() error { _, err := r.User("alice"); return err }},
		{"group", func() error { _, err := r.Group("readers"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.lookup()
			if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnknown) || err.Error() != "NSS lookup not attempted: 2 earlier lookups are still unanswered" {
				t.Errorf("lookup while %d hang: %v", n, err)
			}
		})
	}
	if got := len(hung.askedNames()); got != n {
		t.Errorf("NSS was asked %d times, want %d", got, n)
	}

	// NSS answers again: the slots are free.
	hung.answer()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		uid, err := r.User("alice")
		if err == nil && uid == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after NSS answered: %d, %v", uid, err)
		}
	}
}

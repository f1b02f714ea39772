// SPDX-License-Identifier: Apache-2.0

//go:build race

package testnet

// raceEnabled: a test built with -race builds the daemon it runs with
// -race too, so the service's goroutines are checked as the tests drive it.
const raceEnabled = true

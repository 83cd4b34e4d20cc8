package main

import (
	"os"
	"testing"

	"github.com/bont/switchboard/internal/oauthtestserver"
)

// TestMain lets this test binary serve as the third-party OAuth server of
// the black-box refresh test (refresh_thirdparty_test.go), which starts it
// as a separate process: no build step.
func TestMain(m *testing.M) {
	oauthtestserver.RunIfChild()
	os.Exit(m.Run())
}

package bolt

import (
	"encoding/json"

	gojson "github.com/goccy/go-json"

	"github.com/bont/switchboard/switchboard"
)

// Decoding the values the store wrote. Replaying a changelog is mostly
// decoding events (two thirds of a resume's CPU when the replay history
// cannot serve it, as after a restart), and encoding/json spends about
// 12 µs on one; github.com/goccy/go-json decodes the same bytes into the
// same values in about a third of that, by compiling a decoder per type
// instead of walking it with reflection per value. What it decodes is
// checked against encoding/json over generated values and fuzzed ones
// (decode_test.go). Should it ever refuse a value, encoding/json decodes
// it, so an error is always encoding/json's own.

// decodeEvent decodes a changelog value into ev.
func decodeEvent(data []byte, ev *switchboard.Event) error {
	if err := gojson.Unmarshal(data, ev); err == nil {
		return nil
	}
	*ev = switchboard.Event{}
	return json.Unmarshal(data, ev)
}

// decodeIntegration decodes an integration's stored value into in.
func decodeIntegration(data []byte, in *switchboard.Integration) error {
	if err := gojson.Unmarshal(data, in); err == nil {
		return nil
	}
	*in = switchboard.Integration{}
	return json.Unmarshal(data, in)
}

// scheduleFields are the fields of a stored integration the token
// schedule needs: decoding the rest of every integration costs seconds at
// a million.
type scheduleFields struct {
	ID, ProviderID, StatusReason string
	Status                       switchboard.Status
	Generation                   uint64
}

// decodeScheduleFields decodes those fields of an integration's stored
// value into f.
func decodeScheduleFields(data []byte, f *scheduleFields) error {
	if err := gojson.Unmarshal(data, f); err == nil {
		return nil
	}
	*f = scheduleFields{}
	return json.Unmarshal(data, f)
}

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

// decode decodes data into v with go-json, or with encoding/json when
// go-json refuses it. The store's values are decoded through it: the
// changelog's events (decodeEvent), integrations (decodeIntegration) and
// the token schedule's fields of them (decodeScheduleFields).
func decode[T any](data []byte, v *T) error {
	if err := gojson.Unmarshal(data, v); err == nil {
		return nil
	}
	var zero T
	*v = zero
	return json.Unmarshal(data, v)
}

func decodeEvent(data []byte, ev *switchboard.Event) error { return decode(data, ev) }

func decodeIntegration(data []byte, in *switchboard.Integration) error { return decode(data, in) }

// scheduleFields are the fields of a stored integration the token
// schedule needs: decoding the rest of every integration costs seconds at
// a million.
type scheduleFields struct {
	ID, ProviderID, StatusReason string
	Status                       switchboard.Status
	Generation                   uint64
}

func decodeScheduleFields(data []byte, f *scheduleFields) error { return decode(data, f) }

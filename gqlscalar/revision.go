// Package gqlscalar holds the marshalers of Switchboard's custom GraphQL
// scalars, kept apart from graph/ (generated) and resolvers/ (which imports
// graph/).
package gqlscalar

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/bont/switchboard/switchboard"
)

// MarshalRevision writes a revision as a decimal string: GraphQL's Int is
// 32-bit and revisions are uint64.
func MarshalRevision(r uint64) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(strconv.FormatUint(r, 10)))
	})
}

// UnmarshalRevision accepts a decimal string ("42"). Numbers are accepted
// too when they are whole and non-negative, since the playground makes it
// easy to type one.
func UnmarshalRevision(v any) (uint64, error) {
	switch x := v.(type) {
	case string:
		n, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return 0, switchboard.Errorf(switchboard.EINVALID, "Revision %q is not a non-negative whole number in decimal.", x)
		}
		return n, nil
	case json.Number:
		n, err := strconv.ParseUint(string(x), 10, 64)
		if err == nil {
			return n, nil
		}
	case int:
		if x >= 0 {
			return uint64(x), nil
		}
	case int64:
		if x >= 0 {
			return uint64(x), nil
		}
	case float64:
		if x >= 0 && x == float64(uint64(x)) {
			return uint64(x), nil
		}
	}
	return 0, switchboard.Errorf(switchboard.EINVALID, "Revision %v is not a non-negative whole number as a decimal string.", fmt.Sprint(v))
}

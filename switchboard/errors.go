package switchboard

import (
	"errors"
	"fmt"
)

// Error codes. They are stable: clients match on them (GraphQL
// extensions.code), so never rename one.
const (
	EUNAUTHENTICATED = "UNAUTHENTICATED"
	EFORBIDDEN       = "FORBIDDEN"
	ENOTFOUND        = "NOT_FOUND"
	EINVALID         = "INVALID_INPUT"
	ECONFIRM         = "CONFIRMATION_REQUIRED"
	ECONFLICT        = "CONFLICT"
	EPLAN            = "PLAN_UPGRADE_REQUIRED"
	ECOMPACTED       = "COMPACTED"
	EUNAVAILABLE     = "UNAVAILABLE"
	EINTERNAL        = "INTERNAL"
)

// Error is an error a client may see: a stable Code and a Message a person
// can act on. Anything that is not an *Error is internal, and its text is
// never shown to a client.
type Error struct {
	Code    string
	Message string
	// Field names the offending input field, when there is one
	// (e.g. a setting key).
	Field string
}

func (e *Error) Error() string {
	return fmt.Sprintf("switchboard error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the *Error in err's chain, EINTERNAL for any
// other error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the *Error in err's chain, or a
// generic message for internal errors, whose text must not leak.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

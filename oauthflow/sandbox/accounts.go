package sandbox

import (
	"slices"
	"strings"
)

// Sandbox scopes: the CRM client asks for contacts and deals, the mail
// client for mail and calendar.
const (
	ScopeContactsRead = "contacts.read"
	ScopeDealsRead    = "deals.read"
	ScopeMailRead     = "mail.read"
	ScopeCalendarRead = "calendar.read"
)

// The sandbox's two products, each a client registration of its own.
const (
	CRMName  = "Sandbox CRM"
	MailName = "Sandbox Mail"
)

var (
	crmScopes  = []string{ScopeContactsRead, ScopeDealsRead}
	mailScopes = []string{ScopeMailRead, ScopeCalendarRead}
)

// Account is a demo account of the sandbox provider.
type Account struct {
	Sub    string
	Name   string
	Email  string
	Scopes []string // what this account may grant
}

var accounts = []Account{
	{Sub: "sbx-1001-ada", Name: "Ada Lovelace", Email: "ada@sandbox.test", Scopes: []string{ScopeContactsRead, ScopeDealsRead, ScopeMailRead, ScopeCalendarRead}},
	{Sub: "sbx-1002-grace", Name: "Grace Hopper", Email: "grace@sandbox.test", Scopes: []string{ScopeContactsRead, ScopeDealsRead, ScopeMailRead, ScopeCalendarRead}},
	// Lin Ited models a user who lost scopes: deals and calendar.
	{Sub: "sbx-1003-limited", Name: "Lin Ited", Email: "limited@sandbox.test", Scopes: []string{ScopeContactsRead, ScopeMailRead}},
}

// Accounts lists the sandbox's demo accounts.
func Accounts() []Account {
	out := make([]Account, len(accounts))
	for i, a := range accounts {
		a.Scopes = slices.Clone(a.Scopes)
		out[i] = a
	}
	return out
}

func account(email string) *Account {
	for i := range accounts {
		if strings.EqualFold(accounts[i].Email, email) {
			return &accounts[i]
		}
	}
	return nil
}

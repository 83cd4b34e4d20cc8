package httpapi

import (
	"mime"
	"net/http"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/bont/switchboard/switchboard"
)

// checkRequest answers what gqlgen's transports would refuse without a
// stable code: a method other than GET and POST (405), a POST that is not
// JSON (415), and a mutation or subscription sent with GET (405: GET must
// stay safe, so a link or a prefetch can never change anything).
func checkRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebsocket(r) {
			next.ServeHTTP(w, r)
			return
		}
		switch r.Method {
		case http.MethodPost:
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if mt != "application/json" {
				writeCodeError(w, http.StatusUnsupportedMediaType, switchboard.EINVALID,
					"Send GraphQL requests as a JSON body with Content-Type: application/json.")
				return
			}
		case http.MethodGet:
			if q := r.URL.Query().Get("query"); q != "" && !onlyQueries(q, r.URL.Query().Get("operationName")) {
				w.Header().Set("Allow", "POST")
				writeCodeError(w, http.StatusMethodNotAllowed, switchboard.EINVALID,
					"Only queries may be sent with GET; send mutations and subscriptions with POST (subscriptions over a websocket).")
				return
			}
		case http.MethodOptions:
		default:
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			writeCodeError(w, http.StatusMethodNotAllowed, switchboard.EINVALID,
				"Use POST (or GET for queries) on /graphql.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// onlyQueries reports whether the operation a GET request would run is a
// query. A document that does not parse is left to gqlgen, which answers
// GRAPHQL_PARSE_FAILED.
func onlyQueries(query, operationName string) bool {
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		return true
	}
	for _, op := range doc.Operations {
		if operationName != "" && op.Name != operationName {
			continue
		}
		if op.Operation != ast.Query {
			return false
		}
	}
	return true
}

// isWebsocket reports whether r asks to upgrade to a websocket.
func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

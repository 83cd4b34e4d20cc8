package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// postTransport is gqlgen's POST transport (transport.POST, default
// options) taking the request's parameters as the query cache already
// decoded them (bodyReader.params), instead of reading the body and
// decoding it a second time. It answers exactly as transport.POST does:
// the same content type from the Accept header, statuses and JSON. A body
// the query cache did not decode, or whose variables or extensions do
// not decode as gqlgen decodes them, goes to transport.POST itself.
type postTransport struct{ transport.POST }

var _ graphql.Transport = postTransport{}

const (
	contentTypeJSON        = "application/json"
	contentTypeGraphQLJSON = "application/graphql-response+json"
)

func (t postTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	br, ok := r.Body.(*bodyReader)
	if !ok || br.params == nil {
		t.POST.Do(w, r, exec)
		return
	}
	start := graphql.Now()
	params := &graphql.RawParams{Query: br.params.Query, OperationName: br.params.OperationName}
	if !decodeLikeGqlgen(br.params.Variables, &params.Variables) || !decodeLikeGqlgen(br.params.Extensions, &params.Extensions) {
		t.POST.Do(w, r, exec)
		return
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	ctx := r.Context()
	contentType := responseContentType(r)
	w.Header().Add("Content-Type", contentType)
	rc, opErr := exec.CreateOperationContext(ctx, params)
	if opErr != nil {
		status := http.StatusOK
		if errcode.GetErrorKind(opErr) == errcode.KindProtocol {
			status = http.StatusUnprocessableEntity
			if contentType == contentTypeGraphQLJSON {
				status = http.StatusBadRequest
			}
		}
		w.WriteHeader(status)
		writeResponse(w, exec.DispatchError(graphql.WithOperationContext(ctx, rc), opErr))
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, rc)
	writeResponse(w, responses(ctx))
}

// decodeLikeGqlgen decodes one member of the request body as
// transport.POST does (numbers as json.Number). Absent stays nil.
func decodeLikeGqlgen(raw json.RawMessage, v *map[string]any) bool {
	if len(raw) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v) == nil
}

// responseContentType is transport.POST's choice of content type with
// its default options: application/json unless the Accept header prefers
// application/graphql-response+json.
func responseContentType(r *http.Request) string {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return contentTypeJSON
	}
	for part := range strings.SplitSeq(accept, ",") {
		mediaType, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mediaType {
		case "*/*", "application/*", contentTypeJSON:
			return contentTypeJSON
		case contentTypeGraphQLJSON:
			return contentTypeGraphQLJSON
		}
	}
	return contentTypeGraphQLJSON
}

// writeResponse is transport.POST's: the response as JSON, or a panic
// (which gqlgen's recovery answers) if it cannot be encoded.
func writeResponse(w http.ResponseWriter, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		panic(fmt.Errorf("unable to marshal %s: %w", string(resp.Data), err))
	}
	_, _ = w.Write(b)
}

package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/inspectd/inspectd/inspection"
)

// maxProductName is the longest product name ([[product]] name).
const maxProductName = 64

// productHowTo ends every 415 answer of POST /api/product.
const productHowTo = `send application/json {"product":"…"}, an HTML form (application/x-www-form-urlencoded) with product, or no body and no Content-Type with ?product=… in the query`

// productRequest is the JSON body of POST /api/product.
type productRequest struct {
	Product string `json:"product"`
}

// productResponse is the body of a successful POST /api/product.
type productResponse struct {
	// Product is the product selected; Active the station's active
	// product after the call (the same unless a later selection won).
	Product string `json:"product"`
	Active  string `json:"active"`
}

// handleProduct selects the active product (source "http"): 200
// {"product","active"}; 400 for a malformed request; 404 for an unknown
// product and 409 for a refused selection (another source is
// authoritative, the bundle failed), with the daemon's reason; 501 when
// the daemon has no product changeover. A browser's form submission is
// redirected to / (303).
func (s *Server) handleProduct(w http.ResponseWriter, r *http.Request) {
	if !acceptPost(w, r, "/api/product", "product selection") {
		return
	}
	name, err := productName(w, r)
	if err != nil {
		s.refuseBody(w, r, "product selection refused", err)
		return
	}
	d := s.daemon(w)
	if d == nil {
		return
	}
	sel, ok := d.(inspection.ProductSelector)
	if !ok {
		writeError(w, http.StatusNotImplemented, "product selection is not available on this station (its daemon has no product changeover)")
		return
	}
	if err := sel.SelectProduct(name, inspection.ProductSourceHTTP); err != nil {
		code := http.StatusConflict
		if errors.Is(err, inspection.ErrUnknownProduct) {
			code = http.StatusNotFound
		}
		s.log.Info("product selection refused", "product", name, "remote", r.RemoteAddr, "err", err)
		writeError(w, code, err.Error())
		return
	}
	s.log.Info("product selected over HTTP", "product", name, "remote", r.RemoteAddr)
	if isBrowserForm(r) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, productResponse{Product: name, Active: d.Status().Products.Active})
}

// productField is the one field POST /api/product reads.
var productField = postedField{
	path: "/api/product", name: "product", howTo: productHowTo,
	decodeJSON: func(dec *json.Decoder) (string, error) {
		var req productRequest
		err := dec.Decode(&req)
		return req.Product, err
	},
}

// productName reads and checks the product of a POST /api/product: a
// JSON body {"product":…}, an HTML form field product, or, with neither a
// body nor a Content-Type, the query's product.
func productName(w http.ResponseWriter, r *http.Request) (string, error) {
	name, err := productField.read(w, r)
	if err != nil {
		return "", err
	}
	if err := checkProductName(name); err != nil {
		return "", err
	}
	return name, nil
}

// checkProductName checks a product name as [[product]] names are made:
// 1-64 of [A-Za-z0-9_.-].
func checkProductName(s string) error {
	if s == "" {
		return errors.New(`product: missing; name a [[product]] (JSON {"product":"…"} or form field product)`)
	}
	if len(s) > maxProductName {
		return fmt.Errorf("product: %d bytes long; a product name is 1-%d characters of A-Z a-z 0-9 _ . -", len(s), maxProductName)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("product: %q contains %q; a product name is 1-%d characters of A-Z a-z 0-9 _ . -", s, string(c), maxProductName)
		}
	}
	return nil
}

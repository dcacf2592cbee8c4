// Package openapi owns the OpenAPI v3 documents of Skiff's API server. It
// builds them by reflection over the Go types of the served kinds (the
// k8s.io/api structs), with field descriptions from their SwaggerDoc()
// methods and schema names as kube-apiserver spells them
// (io.k8s.api.core.v1.Pod). kubectl needs them: default (strict) apply,
// create and replace look up the fieldValidation parameter of each kind's
// PATCH operation, apply computes strategic merge patches from the schemas,
// and explain prints them.
//
// The caller builds the documents once and serves them for the life of the
// server:
//
//	docs, err := openapi.New(kinds)
//	index := docs.Index()                       // GET /openapi/v3
//	body, hash, ok := docs.Document("api/v1")   // GET /openapi/v3/api/v1?hash=...
//
// Documents is immutable after New and safe for concurrent use.
package openapi

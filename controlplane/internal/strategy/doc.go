// Package strategy owns the per-kind rules kube-apiserver applies to an object
// before it is stored: defaulting, as the v1 defaulters of pkg/apis/{core,apps,
// discovery}/v1 do it, and validation, as pkg/apis/*/validation does it, with
// the same field paths, error types and messages, so that kubectl prints what
// it would print against a real cluster.
//
// The API server installs the three entry points as the registry hooks of
// every served resource (controlplane/internal/registry.Resource):
//
//	res.Default = strategy.Default               // create and update, first
//	res.Validate = strategy.Validate             // create, after PrepareForCreate
//	res.ValidateUpdate = strategy.ValidateUpdate // update, after PrepareForUpdate
//
// A write then runs Default, the registry's PrepareForCreate or
// PrepareForUpdate, and Validate or ValidateUpdate, whose errors the registry
// turns into a 422 Invalid. Kinds this package does not know are left alone:
// Default does nothing and the validators return no errors. The services'
// PrepareForUpdate should start with PrepareServiceUpdate, which drops what
// a type change leaves stale. Controllers that build pods from templates can
// use DefaultPodTemplate, ValidatePodTemplate and ValidatePodSpec.
//
// What is not here: object metadata (names, labels, annotations, finalizers,
// owner references) is validated by the registry itself; cluster IPs, IP
// families and node ports are allocated, and checked against their ranges, by
// the service allocator; server-owned fields (status on create, generation)
// are handled by the PrepareFor hooks.
//
// Default is idempotent: defaulting a defaulted object changes nothing.
// Validate and ValidateUpdate never modify their arguments. All functions are
// pure and safe for concurrent use.
package strategy

// Package tdspoolpb is the filter's configuration: the Go generated from proto/tdspool.proto
// (`make generate`; TestGeneratedCodeIsFresh fails when it is stale) and Load, which decodes
// the JSON Envoy passes, applies defaults and validates.
//
// Validate is one hand-written pass that returns every problem at once, each prefixed with
// its field path ("buckets[0].max_connections: ..."), after the defaults are applied. About
// half of its rules relate fields to each other (bucket names and clusters unique, routes
// naming configured buckets, lease_ttl against heartbeat_interval, a certificate for an
// encrypting listener) or look outside the message (certificate files, environment
// variables), so the schema carries no declarative validation annotations: they would split
// the rules in two places and change the messages the tests and operators rely on.
package tdspoolpb

package filter

import (
	"fmt"
	"time"

	"github.com/tdspool/tdspool/proto/tdspoolpb"
	"github.com/tdspool/tdspool/tds"
)

// clientError is a refusal the client sees as a real TDS ERROR + DONE (with the error bit) in one
// reply message: go-mssqldb turns collected ERROR tokens into an error only at the DONE. The
// default numbers are the ones driver retry logic treats as transient (or, for policy and
// routing, deliberately not); `error_numbers: SEED` keeps the original system's 50001..50004.
type clientError struct {
	kind  errorKind
	text  string
	class uint8
}

type errorKind uint8

const (
	errPoolExhausted errorKind = iota
	errNoRoute
	errBackendUnavailable
	errPolicy
	errProtocol
	errBucketPaused   // the queue timeout ran out while an operator had paused the bucket
	errBucketDraining // an operator is draining the bucket
	errBucketDisabled // an operator disabled the bucket
	errKilled         // an operator killed the session
	numErrorKinds
)

var errorKindNames = [numErrorKinds]string{"pool_exhausted", "no_route", "backend_unavailable", "policy", "protocol",
	"bucket_paused", "bucket_draining", "bucket_disabled", "killed"}

func (k errorKind) String() string { return errorKindNames[k] }

// number maps a kind to the configured numbering. The default set: 10928 (pool exhausted) and
// 40613 (backend unavailable) are in the transient lists of SqlClient, JDBC, tedious and EF Core,
// so their retry logic reconnects; 40532 (no route) and 18456 (policy) deliberately are not.
func (k errorKind) number(set tdspoolpb.ErrorNumbers) int32 {
	if set == tdspoolpb.ErrorNumbers_SEED {
		return [numErrorKinds]int32{50001, 50002, 50003, 50004, 50005, 50006, 50007, 50008, 50009}[k]
	}
	// Paused and draining are transient (40613: drivers retry, and get in once the operator
	// resumes); disabled is not (40532, like an unknown server); a killed session gets SQL
	// Server's own number for a session in the kill state.
	return [numErrorKinds]int32{10928, 40532, 40613, 18456, 40613, 40613, 40613, 40532, 596}[k]
}

func poolExhausted(bucket string, waited time.Duration, cap uint32, queueFull bool) clientError {
	why := fmt.Sprintf("no connection slot became free within %s", waited.Round(time.Millisecond))
	if queueFull {
		why = "its wait queue is full"
	}
	return clientError{kind: errPoolExhausted, class: 20, text: fmt.Sprintf(
		"tdspool: pool exhausted for bucket '%s' (cap %d connections): %s. Retry the connection later.", bucket, cap, why)}
}

func bucketPaused(bucket, by string, waited time.Duration) clientError {
	return clientError{kind: errBucketPaused, class: 20, text: fmt.Sprintf(
		"tdspool: bucket '%s' is paused (%s); no connection was granted within %s. Retry the connection later.",
		bucket, by, waited.Round(time.Millisecond))}
}

func bucketDraining(bucket, by string) clientError {
	return clientError{kind: errBucketDraining, class: 20, text: fmt.Sprintf(
		"tdspool: bucket '%s' is being drained for maintenance (%s) and accepts no new connections. Retry the connection later.",
		bucket, by)}
}

func bucketDisabled(bucket, by string) clientError {
	return clientError{kind: errBucketDisabled, class: 20, text: fmt.Sprintf(
		"tdspool: bucket '%s' is disabled (%s). The login failed.", bucket, by)}
}

func sessionKilled(bucket string) clientError {
	return clientError{kind: errKilled, class: 21, text: fmt.Sprintf(
		"tdspool: this session on bucket '%s' was ended by an operator (kill). Reconnect to continue.", bucket)}
}

func noRoute(f loginFacts) clientError {
	return clientError{kind: errNoRoute, class: 20, text: fmt.Sprintf(
		"tdspool: no route for server '%s', database '%s', user '%s'. The login failed.", f.ServerName, f.Database, f.User)}
}

func backendUnavailable(bucket, reason string) clientError {
	return clientError{kind: errBackendUnavailable, class: 20, text: fmt.Sprintf(
		"tdspool: bucket '%s' is not currently available (%s). Please retry the connection later.", bucket, reason)}
}

func policyRefused(requirement string) clientError {
	return clientError{kind: errPolicy, class: 14, text: "tdspool: login refused by policy: " + requirement + "."}
}

// message frames the error as one reply message (ERROR then DONE with the error bit).
func (e clientError) message(set tdspoolpb.ErrorNumbers, packetSize int) []byte {
	payload := tds.ErrorMessage(e.kind.number(set), 1, e.class, e.text, "tdspool", "", 1)
	return tds.AppendPackets(nil, tds.PacketReply, 0, payload, packetSize)
}

package webhook

// Wake is wake, for the tests against a real API server.
var Wake = wake

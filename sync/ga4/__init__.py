"""GA4 Measurement Protocol: identities, validation rules, request building and sending."""

"""Local stand-ins for Salesforce, HubSpot and GA4 that speak their real wire protocols."""

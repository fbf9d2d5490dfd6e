"""ga4sync: CRM stage changes to GA4 Measurement Protocol offline conversions, exactly once."""

__version__ = "0.1.0"

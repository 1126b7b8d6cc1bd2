"""crm_contracts: the public language of the CRM platform.

Integration-event schemas (one module per publishing service), the envelope every published event
travels in, HTTP/RPC payload schemas, and the catalog that maps (type, version) to a schema.
"""

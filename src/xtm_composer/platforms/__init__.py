"""Platform clients (OpenCTI GraphQL, later OpenAEV REST) behind one protocol."""

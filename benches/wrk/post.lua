wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer_name":"Jean Dupont","customer_email":"jean.dupont@example.com","product":"Laptop","quantity":1,"amount":"999.99","currency":"EUR","address":"12 Rue de la Paix, 75002 Paris"}'

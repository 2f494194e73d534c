-- The original orders schema, as it was found (see README.md for what is wrong with it).
CREATE TABLE customers (
    customer_id SERIAL PRIMARY KEY,
    customer_name TEXT,
    customer_email TEXT,
    customer_contact_name VARCHAR(100),
    customer_phone VARCHAR(20),
    address TEXT,
    address_state TEXT,
    customer_balance FLOAT
);

CREATE TABLE orders (
    order_id SERIAL PRIMARY KEY,
    order_ref INT NOT NULL,
    customer_id INT REFERENCES customers (customer_id),
    order_schedule BIT(336),
    delivery_script_name TEXT,
    delivery_script_args JSON,
    order_amount INT,
    order_status TEXT CHECK (order_status IN ('pending', 'active', 'paused', 'cancelled', 'expired', 'recreated'))
);

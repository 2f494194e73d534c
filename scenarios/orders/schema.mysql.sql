-- The original orders schema in MySQL/MariaDB types, as it was found (see README.md).
-- On MySQL the scenario adds the foreign key orders.customer_id -> customers after
-- loading; on MariaDB, where wraith cannot carry foreign keys, it leaves it out.
CREATE TABLE customers (
    customer_id INT AUTO_INCREMENT PRIMARY KEY,
    customer_name TEXT,
    customer_email TEXT,
    customer_contact_name VARCHAR(100),
    customer_phone VARCHAR(20),
    address TEXT,
    address_state TEXT,
    customer_balance DOUBLE
) ENGINE=InnoDB;

CREATE TABLE orders (
    order_id INT AUTO_INCREMENT PRIMARY KEY,
    order_ref INT NOT NULL,
    customer_id INT,
    order_schedule BINARY(42),
    delivery_script_name TEXT,
    delivery_script_args JSON,
    order_amount INT,
    order_status VARCHAR(20)
) ENGINE=InnoDB;

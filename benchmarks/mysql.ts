// Where the MySQL baseline connects: MYSQL_URL, or MariaDB on this machine.
export const mysqlUrlDefault = 'mysql://root@127.0.0.1:3306/test';
export const mysqlUrl = (): string => process.env.MYSQL_URL ?? mysqlUrlDefault;

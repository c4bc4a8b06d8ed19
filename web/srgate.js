// srgate browser client (being built)
export {};
